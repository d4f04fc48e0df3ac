"""On SIGTERM, every event a tab already sent finishes and its result reaches that tab.

uvicorn closes every WebSocket as soon as its shutdown begins, and Reflex's event processor
drains only in the app's lifespan shutdown, after that. So an event running at SIGTERM was
committed (a note stored) while its answer went nowhere: the tab shows a write that succeeded as
lost, and a retry writes it twice. The server therefore drains events first, in this order:

1. stop taking events from browsers: one that arrives now is answered with a toast saying it
   was not applied (it is neither run nor lost in silence);
2. wait until the processor is idle: its queue, each tab's queue and the running handlers,
   including the events those handlers chain;
3. wait until every Socket.IO packet has been handed to its WebSocket;

and only then does uvicorn close the sockets. All of it within the budget the server gives
(part of SHUTDOWN_TIMEOUT); what is still running then is left to the usual deadline.

Reflex 0.9.2 exposes no "busy" or "flush" call: the processor's queues and the engine.io
sockets' send queues are read directly (tests/test_event_drain.py fails if that stops working).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("working.server")

TURNED_AWAY = "The server is restarting: that action was not applied. Please repeat it."
_POLL_S = 0.02


class EventDrain:
    def __init__(self, app: Any) -> None:
        self._app = app
        self.closed = False
        self.turned_away = 0

    def install(self) -> EventDrain:
        """Put the gate in front of Reflex's handler for browser events (python-socketio looks
        `on_event` up on the namespace object at each event)."""
        namespace = self._app.event_namespace
        take = namespace.on_event

        async def on_event(sid: str, data: Any) -> None:
            if self.closed:
                await self._turn_away(namespace, sid)
                return
            await take(sid, data)

        namespace.on_event = on_event
        return self

    async def run(self, budget: float, give_up: Callable[[], bool] = lambda: False) -> float:
        """Close the gate and wait for the events already taken and their answers; returns the
        seconds spent (at most `budget`, less when `give_up()` turns true: a second signal)."""
        self.closed = True
        started = time.monotonic()
        deadline = started + budget
        idle = await self._until(self._processor_idle, deadline, give_up)
        flushed = idle and await self._until(self._packets_sent, deadline, give_up)
        spent = time.monotonic() - started
        away = f"; {self.turned_away} arriving meanwhile turned away" if self.turned_away else ""
        if flushed:
            log.info("events drained in %.2fs%s", spent, away)
        else:
            log.warning(
                "events still running after %.1fs: closing the sockets anyway%s", spent, away
            )
        return spent

    async def _turn_away(self, namespace: Any, sid: str) -> None:
        import reflex as rx
        from reflex.state import StateUpdate
        from reflex_base.event import Event

        self.turned_away += 1
        token = namespace.sid_to_token.get(sid)
        if token is None:
            return
        toast = rx.toast.warning(TURNED_AWAY, id="server-restarting")
        with contextlib.suppress(Exception):  # the tab may be gone already
            await namespace.emit_update(StateUpdate(events=Event.from_event_type(toast)), token)

    @staticmethod
    async def _until(
        done: Callable[[], bool], deadline: float, give_up: Callable[[], bool]
    ) -> bool:
        # Twice in a row: a handler that finishes may hand its tab's next event to a new task.
        settled = 0
        while settled < 2:
            settled = settled + 1 if done() else 0
            if time.monotonic() >= deadline or give_up():
                return False
            await asyncio.sleep(_POLL_S)
        return True

    def _processor_idle(self) -> bool:
        processor = getattr(self._app, "_event_processor", None)
        if processor is None:
            return True
        queue = processor._queue
        waiting = queue is not None and (queue.qsize() or queue._unfinished_tasks)
        return not (waiting or processor._tasks or processor._token_queues)

    def _packets_sent(self) -> bool:
        sockets = self._app.sio.eio.sockets.values() if self._app.sio is not None else ()
        return all(s.queue.empty() for s in list(sockets))


_current: EventDrain | None = None


def install(app: Any) -> EventDrain:
    global _current
    _current = EventDrain(app).install()
    return _current


def current() -> EventDrain | None:
    return _current
