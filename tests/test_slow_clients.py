"""The test helpers that add to a copy of the export work on a read-only export, as the Nix
store gives it to checks.pytest (0555 directories, 0444 files)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from slow_clients import LARGE_ASSET

HERE = Path(__file__).resolve().parent
# Root keeps its uid (its interpreter may sit under /root) but loses what lets it ignore modes.
_AS_UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


def _read_only_export(root: Path) -> Path:
    export = root / "export"
    (export / "assets" / "nested").mkdir(parents=True)
    (export / "index.html").write_text("<html></html>")
    (export / "assets" / "app.js").write_text("console.log(1);\n")
    (export / "assets" / "nested" / "chunk.js").write_text("export {};\n")
    subprocess.run(["chmod", "-R", "a-w", str(export)], check=True)
    return export


def test_the_large_asset_copy_works_on_a_read_only_export() -> None:
    """`chmod -R a-w` on the export, then the helper. Root writes through mode bits
    (CAP_DAC_OVERRIDE), so as root (CI) the helper runs without that capability: mode bits bind
    it as they bind the Nix builder's unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="working-ro-export-"))
    try:
        export = _read_only_export(root)
        copy = root / "copy"
        script = (
            "import sys; from pathlib import Path; from slow_clients import"
            " export_with_large_asset as f; f(Path(sys.argv[1]), Path(sys.argv[2]))"
        )
        result = subprocess.run(
            [*_AS_UNPRIVILEGED, sys.executable, "-c", script, str(export), str(copy)],
            cwd=HERE,
            env={**os.environ, "PYTHONPATH": str(HERE)},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert (copy / "assets" / LARGE_ASSET).stat().st_size == 24 * 1024 * 1024
        for original in (p for p in export.rglob("*") if p.is_file()):
            assert (copy / original.relative_to(export)).read_bytes() == original.read_bytes()
        assert not (export / "assets").stat().st_mode & 0o222, "the export stayed read-only"
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
        subprocess.run(["rm", "-rf", str(root)], check=True)
