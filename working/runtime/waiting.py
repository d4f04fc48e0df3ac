"""The bounded wait for a dependency at start: retry with backoff, one line per attempt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .errors import DependencyError
from .masking import describe

log = logging.getLogger("working")

_FIRST_DELAY_S = 0.25
_MAX_DELAY_S = 2.0


def wait_until_reachable(name: str, probe: Callable[[], object], timeout: float, fix: str) -> None:
    """Call `probe` until it succeeds; after `timeout` seconds raise DependencyError (exit 3).

    `fix` completes the final error line: what to check, e.g. "check DATABASE_URL and ...".
    """
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY_S
    attempt = 0
    while True:
        attempt += 1
        try:
            probe()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            reason = describe(exc)
            if remaining <= 0:
                raise DependencyError(
                    f"{name} not reachable after {timeout:g}s ({attempt} attempts): {reason}; {fix}"
                ) from None
            log.warning("%s not reachable (attempt %d): %s; retrying", name, attempt, reason)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_DELAY_S)
        else:
            if attempt > 1:
                log.info("%s reachable after %d attempts", name, attempt)
            return
