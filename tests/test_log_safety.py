"""A hostile client against the log of a real `working serve` (issue #12, items 5 and 6): it can
neither write a line of its choosing, nor flood the log, nor make a secret appear in it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import socketio

from services import REPO, Server, base_env, free_port, wait_until

sys.path.insert(0, str(REPO))
from bench.reflex_client import NAMESPACE, ROOT_STATE

pytestmark = pytest.mark.slow

FRONTEND_EXCEPTION = (
    f"{ROOT_STATE}.reflex___state____frontend_event_exception_state.handle_frontend_exception"
)
FORGED_TEXT = "[ERROR] forged by a client"
FORGED_JSON = '{"time": "2026-01-01T00:00:00.000+00:00", "level": "error", "message": "forged"}'
_TEXT_LINE = re.compile(r"^\[(DEBUG|INFO|WARN|ERROR)\] ")


@pytest.fixture(scope="module", params=["text", "json"])
def server(
    request: pytest.FixtureRequest, frontend_export: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"log-{request.param}")
    port = free_port()
    env = base_env(
        PORT=str(port),
        FRONTEND_DIR=str(frontend_export),
        DATA_DIR=str(tmp / "data"),
        LOG_FORMAT=request.param,
    )
    srv = Server(env, port, cwd=tmp).start()
    srv.wait_healthy()
    yield srv
    srv.stop()


def _fmt(server: Server) -> str:
    return server.env["LOG_FORMAT"]


def _assert_every_line_is_ours(server: Server) -> None:
    """Every line of the process's output is one record of the formatter, whatever its origin."""
    for line in server.lines:
        if _fmt(server) == "json":
            event = json.loads(line)  # raises on anything that is not one JSON object
            assert event["message"] != "forged", line
        else:
            assert _TEXT_LINE.match(line), line
            assert not line.startswith(FORGED_TEXT), line


async def _connect(url: str, token: str, cookie: str) -> socketio.AsyncClient:
    """A tab the way the browser opens one, with its session cookie on the WebSocket request."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        f"{url}?token={token}",
        headers={"Origin": url, "Cookie": cookie},
        transports=["websocket"],
        namespaces=[NAMESPACE],
        socketio_path=NAMESPACE,
        wait_timeout=10,
    )
    return client


def _event(name: str, payload: dict) -> dict:
    return {"name": name, "payload": payload, "router_data": {"pathname": "/", "asPath": "/"}}


def test_a_frontend_exception_cannot_forge_log_lines(server: Server) -> None:
    marker = uuid.uuid4().hex
    text = f"{marker}\n{FORGED_TEXT}\r\n{FORGED_JSON}\n\x1b[2J\u2028{FORGED_TEXT}"

    async def scenario() -> None:
        client = await _connect(server.url, str(uuid.uuid4()), "a=b")
        try:
            payload = {"info": text, "component_stack": f"\n{FORGED_TEXT}\n"}
            await client.emit("event", _event(FRONTEND_EXCEPTION, payload), namespace=NAMESPACE)
            await asyncio.sleep(0.5)
        finally:
            await client.disconnect()

    asyncio.run(scenario())
    wait_until(lambda: marker in server.output, 10, "the frontend exception's log line")
    lines = [line for line in server.lines if marker in line]
    assert len(lines) == 1  # one event, one line
    _assert_every_line_is_ours(server)
    if _fmt(server) == "json":
        assert FORGED_TEXT in json.loads(lines[0])["message"]  # kept, as a value
    else:
        assert "\x1b" not in lines[0]
        assert "\\n[ERROR] forged by a client\\r\\n" in lines[0]


def test_an_unknown_event_is_logged_without_token_cookie_or_password(server: Server) -> None:
    token = str(uuid.uuid4())
    session = f"s{uuid.uuid4().hex}"
    password = f"pw-{uuid.uuid4().hex}"

    async def scenario() -> None:
        client = await _connect(server.url, token, f"working_session={session}; theme=dark")
        try:
            payload = {"form": {"username": "someone", "password": password}}
            await client.emit(
                "event", _event(f"{ROOT_STATE}.no_such_handler", payload), namespace=NAMESPACE
            )
            await asyncio.sleep(0.5)
        finally:
            await client.disconnect()

    asyncio.run(scenario())
    wait_until(lambda: "no_such_handler" in server.output, 10, "the unknown event's log line")
    for secret in (token, session, password):
        assert secret not in server.output
    _assert_every_line_is_ours(server)


def test_a_thousand_malformed_packets_write_a_bounded_log(server: Server) -> None:
    """Broken Socket.IO packets, events that are not objects, unknown packet types: each raised
    a traceback printed twice, 2.9 MiB of log for 1,000 of them."""
    junk = [
        '42/_event,["event",',
        '42/_event,{"a":1}',
        f"4\n{FORGED_TEXT}",
        "9",
        f'42/_event,["event","{FORGED_TEXT}"]',
        '42/_event,["event",12]',
    ]

    async def scenario() -> int:
        sent = 0
        url = f"{server.url}/_event/?EIO=4&transport=websocket&token={uuid.uuid4()}"
        async with aiohttp.ClientSession() as session:
            for _ in range(10):  # the server may drop a connection that misbehaves
                async with session.ws_connect(url, headers={"Origin": server.url}) as ws:
                    await ws.receive_str()
                    await ws.send_str("40/_event,")
                    await ws.receive_str()
                    for i in range(100):
                        if ws.closed:
                            break
                        await ws.send_str(junk[i % len(junk)])
                        sent += 1
                    await asyncio.sleep(0.2)
        return sent

    before_lines = len(server.lines)
    before_bytes = len(server.output)
    sent = asyncio.run(asyncio.wait_for(scenario(), 60))
    # Let the server work through what it received, and the log's batch reach stdout.
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
    time.sleep(1)
    lines = len(server.lines) - before_lines
    written = len(server.output) - before_bytes
    print(f"\n{sent} malformed packets ({_fmt(server)}): {lines} log lines, {written} bytes")
    assert sent >= 500
    assert lines <= 150
    assert written <= 256 * 1024
    _assert_every_line_is_ours(server)


def test_long_values_are_cut(server: Server) -> None:
    marker = uuid.uuid4().hex

    async def scenario() -> None:
        client = await _connect(server.url, str(uuid.uuid4()), "a=b")
        try:
            payload = {"info": marker + "y" * 60_000, "component_stack": ""}
            await client.emit("event", _event(FRONTEND_EXCEPTION, payload), namespace=NAMESPACE)
            await asyncio.sleep(0.5)
        finally:
            await client.disconnect()

    asyncio.run(scenario())
    wait_until(lambda: marker in server.output, 10, "the long line")
    line = next(x for x in server.lines if marker in x)
    assert len(line) < 10_000
    assert "more characters not logged" in line


# -- the formatter and the rate limit, in process ---------------------------------------------


def test_render_escapes_every_line_break_in_text_and_keeps_json_one_line() -> None:
    from working.runtime.logs import render

    hostile = "a\nb\rc\x1b[31md\u2028e\x85f"
    text = render("text", "ERROR", "x", hostile, exception="Traceback\n  line\nError: z\n")
    assert "\n" not in text
    assert "\r" not in text
    assert "\x1b" not in text
    assert "\u2028" not in text
    assert "\x85" not in text
    assert text.startswith("[ERROR] a\\nb\\rc\\e[31md\\u2028e\\x85f | Traceback \\n ")
    line = render("json", "ERROR", "x", hostile)
    assert "\n" not in line
    assert json.loads(line)["message"] == hostile


def test_reflex_event_dumps_are_masked() -> None:
    from working.runtime.masking import mask_text

    dump = (
        "Event(name='x', router_data={'token': 'tab-token-1', 'headers': {'cookie': "
        "'working_session=live-session; theme=dark', 'host': 'h'}}, payload={'form': "
        "{'username': 'u', 'password': 'hunter2-pw'}, 'a.session_token_rx_state_': 'tok-2'})"
    )
    masked = mask_text(dump)
    for secret in ("tab-token-1", "live-session", "hunter2-pw", "tok-2"):
        assert secret not in masked
    assert "'host': 'h'" in masked
    assert "'username': 'u'" in masked


def test_repeated_errors_are_held_back_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from working.runtime import logs

    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    limit = logs._RepeatLimit()

    def record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("engineio.server", level, __file__, 1, msg, args, None)

    admitted = [limit.admit(record("bad packet from %s", i))[0] for i in range(100)]
    assert sum(admitted) == logs._REPEATS
    assert limit.admit(record("something else"))[0]  # another kind has its own budget
    assert limit.admit(record("info", level=logging.INFO))[0]  # below warnings: never limited
    now[0] += logs._WINDOW_S
    ok, summaries = limit.admit(record("bad packet from %s", 0))
    assert ok
    assert summaries == [
        f"{100 - logs._REPEATS} more log lines like 'bad packet from %s' in the last 60s were "
        "not written (rate limit)"
    ]


def test_the_apps_own_lines_are_never_crowded_out_by_other_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of client-caused library lines uses up the shared budget; an outage line of the
    app's own still gets through (it is limited by its kind alone)."""
    import logging

    from working.runtime import logs

    monkeypatch.setattr(logs.time, "monotonic", lambda: 1000.0)
    limit = logs._RepeatLimit()
    for i in range(logs._ALL_KINDS * 2):  # each its own kind: no arguments, client text
        limit.admit(
            logging.LogRecord("engineio.server", logging.ERROR, __file__, 1, f"x{i}", (), None)
        )
    library = logging.LogRecord(
        "socketio.server", logging.WARNING, __file__, 1, "late: %s", ("a",), None
    )
    assert not limit.admit(library)[0]
    outage = logging.LogRecord(
        "working.health", logging.WARNING, __file__, 1, "%s: unreachable (%s)", ("redis", "r"), None
    )
    assert limit.admit(outage)[0]
