"""The Content-Security-Policy follows what an export loads and what the app declares.

Exports here are written the way Reflex 0.9.2 writes them: an `rx.App(stylesheets=[url])` is an
`@import url('...')` in the global stylesheet, head components are `<link>`/`<script>` elements,
and every bundle carries state.js's `data:text/javascript` loader for dynamic components. The
browser tests (test_plain_reflex_app.py, test_browser_csp.py) show the same policy in Chromium.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from working.runtime import security_headers
from working.runtime.errors import ConfigError


def _export(root: Path, *, page: str = "", css: str = "", js: str = "") -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        f"<html><head>{page}<script>window.__ctx = 1</script></head><body></body></html>"
    )
    (root / "assets" / "styles.css").write_text(css)
    (root / "assets" / "app.js").write_text(js or "export const x = 1;")
    return root


def _directives(policy: security_headers.Policy) -> dict[str, list[str]]:
    header = policy.header()
    return {part.split()[0]: part.split()[1:] for part in header.split("; ")}


def test_an_export_that_loads_nothing_foreign_gets_the_base_policy(tmp_path: Path) -> None:
    policy = security_headers.Policy(_export(tmp_path))
    csp = _directives(policy)
    assert csp["script-src"][:2] == ["'self'", "'unsafe-eval'"]
    assert len(csp["script-src"]) == 3  # one hash, for the page's one inline script
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert policy.found == {}
    assert (b"x-frame-options", b"DENY") in security_headers.headers(policy)


def test_the_origins_the_export_names_are_allowed_for_what_they_are(tmp_path: Path) -> None:
    export = _export(
        tmp_path,
        page='<link rel="stylesheet" href="https://cdn.example.org/kit.css">'
        '<script src="https://js.example.net/widget.js"></script>'
        '<link rel="icon" href="https://img.example.com/icon.png">',
        css="@import url('https://fonts.googleapis.com/css2?family=Inter');\n"
        "@font-face { src: url(https://fonts.example.com/a.woff2) }\n"
        ".hero { background: url('https://img.example.com/hero.jpg') }\n"
        ".local { background: url(/assets/x.png) }",
    )
    csp = _directives(security_headers.Policy(export))
    assert "https://cdn.example.org" in csp["style-src"]
    assert "https://fonts.googleapis.com" in csp["style-src"]
    # Google's stylesheet loads its fonts from its other host, which no export file names.
    assert "https://fonts.gstatic.com" in csp["font-src"]
    assert "https://fonts.example.com" in csp["font-src"]
    assert "https://js.example.net" in csp["script-src"]
    assert "https://img.example.com" in csp["img-src"]
    # Each only where it belongs: a stylesheet host cannot serve scripts.
    assert "https://cdn.example.org" not in csp["script-src"]
    assert "https://fonts.googleapis.com" not in csp["script-src"]
    assert "data:" not in csp["script-src"]


def test_data_scripts_only_for_an_app_with_dynamic_components(tmp_path: Path) -> None:
    # Every bundle holds state.js's data: loader; whether the app uses it is the app's to say.
    loader = 'const u = "data:text/javascript;charset=utf-8," + encodeURIComponent(c);'
    export = _export(tmp_path, js=loader)
    dynamic = _directives(security_headers.Policy(export, dynamic_components=True))
    assert "data:" in dynamic["script-src"]
    assert "script-src data:" in security_headers.Policy(export, dynamic_components=True).summary()
    static = _directives(security_headers.Policy(export))
    assert "data:" not in static["script-src"]


def test_what_the_app_declares_is_added_and_logged(tmp_path: Path) -> None:
    declared = security_headers.declared_sources(
        _config(
            {
                "connect-src": ["https://api.example.com"],
                "frame-ancestors": "https://portal.example.com",
            }
        )
    )
    policy = security_headers.Policy(_export(tmp_path), declared)
    csp = _directives(policy)
    assert csp["connect-src"] == ["'self'", "https://api.example.com"]
    # Embedding allowed by name replaces 'none', and X-Frame-Options DENY would contradict it.
    assert csp["frame-ancestors"] == ["https://portal.example.com"]
    assert not [h for h in security_headers.headers(policy) if h[0] == b"x-frame-options"]
    assert "declared: connect-src https://api.example.com" in policy.summary()


_BAD = {
    "unknown directive": ({"scripts": ["https://x.example"]}, "is not a directive an app may"),
    "fixed directive": ({"object-src": ["https://x.example"]}, "is not a directive an app may"),
    "inline script": ({"script-src": ["'unsafe-inline'"]}, "would let any injected script run"),
    "any https script": ({"script-src": ["https:"]}, "would let any injected script run"),
    "not a source": ({"img-src": ["https://a.example b"]}, "which is not a CSP source"),
    "not a mapping": (["https://x.example"], "is a list"),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_a_bad_declaration_is_one_line_naming_it(case: str) -> None:
    declared, expected = _BAD[case]
    with pytest.raises(ConfigError, match=expected) as err:
        security_headers.declared_sources(_config(declared))
    assert "rxconfig.py: content_security_policy" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_declaration_stops_check_config_with_exit_2(tmp_path: Path) -> None:
    from services import REPO, base_env

    (tmp_path / "rxconfig.py").write_text(
        "import reflex as rx\n"
        "config = rx.Config(app_name='working', "
        "content_security_policy={'script-src': [\"'unsafe-inline'\"]})\n"
    )
    # A copy of the checkout's package, with this rxconfig.py pinned beside it.
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "working", tmp_path / "working", ignore=skip)
    out = subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", "check-config"],
        env=base_env(PYTHONPATH=str(tmp_path), DATA_DIR=str(tmp_path / "data")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = out.stdout + out.stderr
    assert out.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1, output
    assert "content_security_policy['script-src']" in errors[0]
    assert "Traceback" not in output


def _config(declared: object) -> object:
    """A real Reflex config as rxconfig.py would build it (rx.Config keeps unknown fields)."""
    import reflex as rx

    return rx.Config(
        app_name="working",
        disable_plugins=[rx.plugins.SitemapPlugin],
        content_security_policy=declared,
    )
