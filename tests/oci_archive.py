"""Container images without a registry, a Dockerfile or Nix: layers written as tar files, packed
into the docker-archive format (`manifest.json`, the image config, one tar per layer: the same
format nix's dockerTools.streamLayeredImage streams) and loaded with `docker load`.

A layer holds host files at the paths the image wants them, with the owner and mode the image
wants, plus the shared-library closure of the executables it carries (what `ldd` resolves, each
library at the path the dynamic loader will ask for, symlinked directories such as Debian's
merged /lib included).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binaries: Iterable[Path]) -> set[Path]:
    """Every shared library the dynamic loader maps for these ELF files (ldd lists the closure)."""
    found: set[Path] = set()
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        if result.returncode != 0:  # "not a dynamic executable": a static binary or a script
            continue
        if "not found" in result.stdout:
            raise RuntimeError(f"ldd {binary}: a library is missing:\n{result.stdout}")
        found.update(Path(m.group(1)) for m in _LDD_LINE.finditer(result.stdout))
    return found


def elf_files(root: Path) -> list[Path]:
    """Shared objects and executables under `root` (by their ELF magic, not their name)."""
    out = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(path)
    return out


@dataclass
class Layer:
    """One image layer: entries keyed by their absolute path in the image."""

    entries: dict[str, tarfile.TarInfo] = field(default_factory=dict)
    sources: dict[str, Path | bytes] = field(default_factory=dict)

    def directory(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._parents(path)
        info = _info(path, tarfile.DIRTYPE, mode, uid, gid)
        self.entries[path] = info

    def text(self, path: str, content: str, mode: int = 0o644) -> None:
        self.data(path, content.encode(), mode)

    def data(self, path: str, content: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        info = _info(path, tarfile.REGTYPE, mode)
        info.size = len(content)
        self.entries[path] = info
        self.sources[path] = content

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        info = _info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.entries[path] = info

    def file(self, host: Path, path: str | None = None, uid: int = 0, gid: int = 0) -> None:
        """A host file (or symlink) at `path` (default: the same path), owned by uid:gid."""
        path = path or str(host)
        self._parents(path)
        st = host.lstat()
        if host.is_symlink():
            self.symlink(path, os.readlink(host))
            return
        info = _info(path, tarfile.REGTYPE, st.st_mode & 0o7777, uid, gid)
        info.size = st.st_size
        # The host mtime is kept: a byte-compiled .pyc is only used while it matches its source.
        info.mtime = int(st.st_mtime)
        self.entries[path] = info
        self.sources[path] = host

    def tree(
        self,
        host: Path,
        path: str,
        skip: Callable[[Path], bool] = lambda _: False,
        rewrite: Callable[[Path, bytes], bytes] | None = None,
        uid: int = 0,
        gid: int = 0,
    ) -> None:
        """A host directory tree at `path`, owned by uid:gid; `rewrite` may change file bytes."""
        self.directory(path, host.stat().st_mode & 0o7777, uid, gid)
        for root, dirs, files in os.walk(host):
            here = Path(root)
            dirs[:] = [d for d in dirs if not skip(here / d)]
            for name in dirs:
                sub = here / name
                target = f"{path}/{sub.relative_to(host)}"
                if sub.is_symlink():
                    self.symlink(target, os.readlink(sub))
                else:
                    self.directory(target, sub.stat().st_mode & 0o7777, uid, gid)
            for name in files:
                src = here / name
                if skip(src):
                    continue
                target = f"{path}/{src.relative_to(host)}"
                self.file(src, target, uid, gid)
                if rewrite is not None and not src.is_symlink():
                    content = src.read_bytes()
                    changed = rewrite(src, content)
                    if changed != content:
                        self.entries[target].size = len(changed)
                        self.sources[target] = changed

    def library(self, host: Path) -> None:
        """A file at the path a loader or a symlink asks for, with every link on the way
        (symlinked directories such as merged-/usr's /lib, and chains like python -> python3.11)."""
        for _ in range(16):
            self._host_path(host)
            if not host.is_symlink():
                return
            host = Path(os.path.normpath(host.parent / os.readlink(host)))
        raise RuntimeError(f"{host}: too many symlinks")

    def _host_path(self, host: Path) -> None:
        # Recreate a symlinked parent (/lib -> usr/lib on merged-/usr Debian) as a symlink and
        # put the file where the link leads.
        current = Path("/")
        for part in host.parts[1:-1]:
            current = current / part
            if current.is_symlink():
                self.symlink(str(current), os.readlink(current))
                self._host_path(current.resolve() / host.relative_to(current))
                return
        self.file(host)

    def _parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents):
            name = str(parent)
            if name != "/" and name not in self.entries:
                self.entries[name] = _info(name, tarfile.DIRTYPE, 0o755)

    def write(self, out: Path) -> str:
        """Write the layer tar; returns its sha256 (the diff_id)."""
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                info = self.entries[path]
                source = self.sources.get(path)
                if isinstance(source, bytes):
                    tar.addfile(info, io.BytesIO(source))
                elif source is not None:
                    with source.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        return _sha256(out)


def _info(path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = 1
    return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(out: Path, tag: str, config: dict, layers: list[Layer]) -> None:
    """A docker-archive tarball (what `docker save` writes and `docker load` reads)."""
    with tempfile.TemporaryDirectory(prefix="oci-layers-") as tmp:
        diff_ids = []
        names = []
        for n, layer in enumerate(layers):
            path = Path(tmp) / f"{n}.tar"
            diff_ids.append(f"sha256:{layer.write(path)}")
            names.append(path)
        image = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:01Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:01Z"} for _ in layers],
        }
        config_bytes = json.dumps(image, sort_keys=True).encode()
        config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
        layer_names = [f"{d.removeprefix('sha256:')}/layer.tar" for d in diff_ids]
        manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]
        with tarfile.open(out, "w") as archive:
            _add_bytes(archive, config_name, config_bytes)
            for name, path in zip(layer_names, names, strict=True):
                archive.add(path, arcname=name)
            _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())


def _add_bytes(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = 1
    archive.addfile(info, io.BytesIO(content))


def docker_load(archive: Path, tag: str) -> None:
    """Load the archive; the image that had this tag before is removed (unless a container
    still uses it), so repeated local runs do not pile up untagged images."""
    subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
    result = subprocess.run(
        ["docker", "load", "--input", str(archive)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker load {archive}: {result.stderr.strip()}")
