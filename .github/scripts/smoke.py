#!/usr/bin/env python3
"""Smoke-test a running `working` service: what a user's first page load needs, end to end.

    smoke.py URL [--commit SHA] [--service NAME]                 # a deployment (e.g. Coolify)
    smoke.py URL --container NAME [--grace S] ...                # a Docker container on this host
    smoke.py URL [--allow-root] ... -- working serve             # starts the command itself

Checks, one line each (`ok` or `FAIL`), exit 0 only if every one passed:

- health: GET <URL>/health answers 200 with JSON status "healthy", the service name (`--service`)
  and `git_commit` equal to `--commit` when given. Retried until `--wait` seconds have passed,
  since a fresh container or deployment takes a moment to become healthy.
- websocket: a real WebSocket on `/_event/?EIO=4&transport=websocket` (Reflex 0.9.2 creates its
  Socket.IO server with `transports=[config.transport]`, "websocket" by default: reflex/app.py,
  reflex_base/config.py; a polling handshake is refused), the Engine.IO open packet and the
  Socket.IO connect of the `/_event` namespace, with a tab token in the query as the browser sends.
- event: one Reflex event round trip, the `hydrate` of the root state (what every page sends
  first), answered by an `event` message whose delta holds the root state with the router data of
  this very token.
- user (`--container` or a started command): the service's process runs as a non-root uid.
- stop (same): SIGTERM (`docker stop` for a container) ends it with exit code 0 within `--grace`.

Standard library only: it runs in the NixOS VM test with the VM's python3, on a CI runner and
against a local `working serve` in the test suite. Exit codes: 0 all passed, 1 a check failed,
2 usage error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Reflex 0.9.2: the Socket.IO path and namespace are both `/_event`; the root state's full name
# and its hydrate handler are what the browser bundle sends first on every page load.
NAMESPACE = "/_event"
ROOT_STATE = "reflex___state____state"
HYDRATE = f"{ROOT_STATE}.hydrate"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


class CheckFailed(Exception):
    """One check did not pass; the message is its one-line reason."""


# --- a minimal RFC 6455 client: text frames, masked from the client, ping/close handled ---------


class WebSocket:
    def __init__(self, url: str, origin: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        self.timeout = timeout
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            raise CheckFailed(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
        self.sock = sock
        self.buffer = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\nUser-Agent: working-smoke/1\r\n\r\n"
        )
        self._send_raw(request.encode())
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        status = status_line.split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise CheckFailed(f"upgrade answered {status_line.strip()!r}, not 101")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        # SHA-1 is what RFC 6455 prescribes for this handshake token; it protects nothing.
        digest = hashlib.sha1((key + _WS_GUID).encode(), usedforsecurity=False).digest()
        accept = base64.b64encode(digest).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise CheckFailed("upgrade answered a wrong Sec-WebSocket-Accept")

    def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv_text(self, deadline: float) -> str:
        """The next text message; answers pings, fails on a close frame."""
        message = bytearray()
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            fin, opcode, payload = self._read_frame()
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise CheckFailed(f"the server closed the WebSocket (code {code})")
            elif opcode in (0x0, 0x1):
                message += payload
                if fin:
                    return message.decode()
            elif opcode == 0x2:
                raise CheckFailed("the server sent a binary frame, expected text")

    def close(self) -> None:
        with contextlib.suppress(OSError, CheckFailed):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self.sock.close()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        header += mask
        self._send_raw(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exact(8))[0]
        mask = self._read_exact(4) if second & 0x80 else b""
        payload = self._read_exact(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def _send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise CheckFailed(f"WebSocket send failed: {_reason(exc)}") from None

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise CheckFailed("no answer from the server in time") from None
        except OSError as exc:
            raise CheckFailed(f"WebSocket receive failed: {_reason(exc)}") from None
        if not chunk:
            raise CheckFailed("the server closed the connection")
        self.buffer += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill()
        data = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return data

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


# --- Engine.IO v4 / Socket.IO v5 over that WebSocket --------------------------------------------


class ReflexSocket:
    """One browser tab's connection to `/_event`: Engine.IO open, Socket.IO namespace connect."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.token = str(uuid.uuid4())
        self.timeout = timeout
        parts = urllib.parse.urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urllib.parse.urlencode({"EIO": "4", "transport": "websocket", "token": self.token})
        url = f"{scheme}://{parts.netloc}{NAMESPACE}/?{query}"
        # The server accepts only its own origin (or ALLOWED_ORIGINS), as a browser would send.
        self.ws = WebSocket(url, origin=f"{parts.scheme}://{parts.netloc}", timeout=timeout)

    def open(self) -> str:
        """Engine.IO open packet, then Socket.IO connect to the namespace; returns its sid."""
        packet = self._recv()
        if not packet.startswith("0"):
            raise CheckFailed(f"expected the Engine.IO open packet, got {_clip(packet)!r}")
        try:
            json.loads(packet[1:])["sid"]
        except (ValueError, KeyError, TypeError):
            raise CheckFailed(f"malformed Engine.IO open packet {_clip(packet)!r}") from None
        self.ws.send_text(f"40{NAMESPACE},")
        answer = self._recv()
        prefix = f"40{NAMESPACE},"
        if answer.startswith(f"44{NAMESPACE},"):
            raise CheckFailed(f"Socket.IO refused the namespace: {_clip(answer)}")
        if not answer.startswith(prefix):
            raise CheckFailed(f"expected the Socket.IO connect answer, got {_clip(answer)!r}")
        try:
            return str(json.loads(answer[len(prefix) :])["sid"])
        except (ValueError, KeyError, TypeError):
            raise CheckFailed(f"malformed Socket.IO connect answer {_clip(answer)!r}") from None

    def emit_event(self, name: str, payload: dict[str, Any]) -> None:
        event = {
            "name": name,
            "payload": payload,
            "router_data": {"pathname": "/", "asPath": "/"},
        }
        self.ws.send_text(f"42{NAMESPACE}," + json.dumps(["event", event]))

    def next_event(self, deadline: float) -> Any:
        """The data of the next Socket.IO `event` message on the namespace."""
        prefix = f"42{NAMESPACE},"
        while True:
            packet = self._recv(deadline)
            if not packet.startswith(prefix):
                continue
            try:
                name, data = json.loads(packet[len(prefix) :])[:2]
            except (ValueError, TypeError):
                raise CheckFailed(f"malformed Socket.IO event {_clip(packet)!r}") from None
            if name == "event":
                return data

    def close(self) -> None:
        self.ws.close()

    def _recv(self, deadline: float | None = None) -> str:
        """The next Engine.IO message packet; answers the server's heartbeat pings."""
        deadline = deadline or time.monotonic() + self.timeout
        while True:
            packet = self.ws.recv_text(deadline)
            if packet == "2":
                self.ws.send_text("3")
            elif packet.startswith("1"):
                raise CheckFailed("the server closed the Engine.IO session")
            elif packet[:1] in ("0", "4"):  # open, or a message carrying a Socket.IO packet
                return packet


# --- the checks -------------------------------------------------------------------------------


def check_health(base: str, service: str | None, commit: str | None, wait: float) -> str:
    url = f"{base}/health"
    deadline = time.monotonic() + wait
    while True:
        try:
            return _judge_health(url, service, commit)
        except CheckFailed:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _judge_health(url: str, service: str | None, commit: str | None) -> str:
    # parse() admits only http and https URLs.
    request = urllib.request.Request(url, headers={"User-Agent": "working-smoke/1"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CheckFailed(f"GET {url}: {_reason(exc)}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise CheckFailed(f"GET {url}: {status}, body is not JSON: {_clip(body)!r}") from None
    if not isinstance(data, dict):
        raise CheckFailed(f"GET {url}: {status}, JSON is not an object")
    if status != 200 or data.get("status") != "healthy":
        raise CheckFailed(f"GET {url}: {status}, status {data.get('status')!r}, not healthy")
    if service is not None and data.get("service") != service:
        raise CheckFailed(f"service is {data.get('service')!r}, expected {service!r}")
    if not data.get("service"):
        raise CheckFailed("the health JSON names no service")
    if commit is not None and data.get("git_commit") != commit:
        raise CheckFailed(f"git_commit is {data.get('git_commit')!r}, expected {commit!r}")
    return f"200 healthy, service {data['service']}, commit {data.get('git_commit')}"


def check_socket(base: str, timeout: float) -> tuple[str, str]:
    """Returns the check's line for `websocket` and for `event`, failing at the first problem."""
    conn = ReflexSocket(base, timeout)
    try:
        sid = conn.open()
        opened = f"Engine.IO open and Socket.IO connect on {NAMESPACE} (sid {sid[:8]}...)"
        try:
            return opened, _hydrate_round_trip(conn, timeout)
        except CheckFailed as exc:
            raise EventFailed(opened, str(exc)) from None
    finally:
        conn.close()


class EventFailed(Exception):
    def __init__(self, opened: str, reason: str) -> None:
        super().__init__(reason)
        self.opened = opened


def _hydrate_round_trip(conn: ReflexSocket, timeout: float) -> str:
    started = time.monotonic()
    conn.emit_event(HYDRATE, {})
    deadline = started + timeout
    while True:
        update = conn.next_event(deadline)
        delta = update.get("delta") if isinstance(update, dict) else None
        root = delta.get(ROOT_STATE) if isinstance(delta, dict) else None
        if not isinstance(root, dict):
            continue
        router = root.get("router_rx_state_") or root.get("router") or {}
        token = (router.get("session") or {}).get("client_token")
        if token != conn.token:
            raise CheckFailed(f"the hydrate delta belongs to token {token!r}, not this tab's")
        elapsed = (time.monotonic() - started) * 1000
        states = len(delta)
        return f"hydrate answered with the root state's delta ({states} states) in {elapsed:.0f} ms"


def check_user(pid: int, allow_root: bool) -> str:
    uid = _uid_of(pid)
    if uid == 0 and not allow_root:
        raise CheckFailed(f"process {pid} runs as root (uid 0)")
    return f"process {pid} runs as uid {uid}" + (" (root allowed)" if uid == 0 else "")


def _uid_of(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise CheckFailed(f"cannot read /proc/{pid}/status: {_reason(exc)}") from None
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise CheckFailed(f"/proc/{pid}/status has no Uid line")


# --- the service under test: a URL, a Docker container, or a command started here ---------------


class Target:
    pid: int | None = None

    def stop(self, grace: float) -> str:
        raise NotImplementedError

    def ensure_alive(self) -> None:
        pass

    def cleanup(self) -> None:
        pass


class Command(Target):
    def __init__(self, argv: Sequence[str]) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept until cleanup)
            prefix="smoke-server-", suffix=".log", delete=False
        )
        try:
            self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise CheckFailed(f"cannot start {argv[0]}: {_reason(exc)}") from None
        self.pid = self.process.pid
        self.keep_log = False

    def ensure_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            self.keep_log = True
            raise CheckFailed(f"the server exited {code}; its output: {self.log.name}")

    def stop(self, grace: float) -> str:
        self.ensure_alive()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.keep_log = True
            raise CheckFailed(f"still running {grace:g}s after SIGTERM (killed)") from None
        if code != 0:
            self.keep_log = True
            raise CheckFailed(f"SIGTERM: exit code {code}, expected 0; output: {self.log.name}")
        return f"SIGTERM: exit code 0 after {time.monotonic() - started:.1f} s"

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        if not self.keep_log:
            Path(self.log.name).unlink(missing_ok=True)


class Container(Target):
    def __init__(self, name: str) -> None:
        self.name = name
        self.pid = int(self._inspect("{{.State.Pid}}")) or None

    def ensure_alive(self) -> None:
        if self._inspect("{{.State.Running}}") != "true":
            code = self._inspect("{{.State.ExitCode}}")
            raise CheckFailed(f"container {self.name} is not running (exit code {code})")

    def stop(self, grace: float) -> str:
        self.ensure_alive()
        started = time.monotonic()
        # docker stop sends the image's StopSignal (SIGTERM), then SIGKILL after --time.
        _docker("stop", "--time", str(int(grace)), self.name, timeout=grace + 30)
        code = self._inspect("{{.State.ExitCode}}")
        if code != "0":
            raise CheckFailed(f"docker stop: exit code {code}, expected 0")
        return f"docker stop: exit code 0 after {time.monotonic() - started:.1f} s"

    def _inspect(self, template: str) -> str:
        return _docker("inspect", "--format", template, self.name, timeout=30)


def _docker(*args: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckFailed(f"docker {args[0]}: {_reason(exc)}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckFailed(f"docker {args[0]}: {last}")
    return done.stdout.strip()


# --- the run ----------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def run(self, name: str, check: Callable[[], str]) -> bool:
        try:
            line = check()
        except CheckFailed as exc:
            return self.fail(name, str(exc))
        self.ok(name, line)
        return True

    def ok(self, name: str, line: str) -> None:
        print(f"ok   {name}: {line}", flush=True)

    def fail(self, name: str, reason: str) -> bool:
        self.failed += 1
        print(f"FAIL {name}: {reason}", flush=True)
        return False


def smoke(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    report = Report()
    target: Target | None = None
    try:
        if args.command:
            target = Command(args.command)
        elif args.container:
            target = Container(args.container)
    except CheckFailed as exc:
        report.fail("start", str(exc))
        return EXIT_FAILED
    try:
        report.run("health", lambda: check_health(base, args.service, args.commit, args.wait))
        if target is not None:
            report.run("running", lambda: _alive(target))
        try:
            opened, event = check_socket(base, args.timeout)
        except EventFailed as exc:
            report.ok("websocket", exc.opened)
            report.fail("event", str(exc))
        except CheckFailed as exc:
            report.fail("websocket", str(exc))
            report.fail("event", "no WebSocket to send it on")
        else:
            report.ok("websocket", opened)
            report.ok("event", event)
        if target is not None:
            pid = target.pid
            if pid is None:
                report.fail("user", "no process id")
            else:
                report.run("user", lambda: check_user(pid, args.allow_root))
            report.run("stop", lambda: target.stop(args.grace))
    finally:
        if target is not None:
            target.cleanup()
    return EXIT_FAILED if report.failed else EXIT_OK


def _alive(target: Target) -> str:
    target.ensure_alive()
    return "the service process is still up"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__


def _clip(text: str | bytes, limit: int = 120) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def parse(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(
        prog="smoke.py", description="Smoke-test a running working service (see the docstring)."
    )
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:3000")
    parser.add_argument("--commit", help="the git_commit /health must report")
    parser.add_argument("--service", help="the service name /health must report")
    parser.add_argument(
        "--container", help="a Docker container on this host: check its user, stop it"
    )
    parser.add_argument(
        "--allow-root", action="store_true", help="accept a process running as root"
    )
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for health (60)")
    parser.add_argument("--timeout", type=float, default=15, help="seconds per WebSocket step (15)")
    parser.add_argument("--grace", type=float, default=30, help="seconds allowed to stop (30)")
    args = parser.parse_args(argv)
    args.command = command
    if args.command and args.container:
        parser.error("give either --container or a command after --, not both")
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https"):
        parser.error(f"URL must start with http:// or https://, got {args.url!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return smoke(args)
    except KeyboardInterrupt:
        print("FAIL interrupted", flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
