"""Log-in and sign-up as the app runs them: rate limits and a hashing slot first, then the
throttle's count in the database, then scrypt in the hashing pool, then the session.

`run_db(fn, *args)` runs `fn(session, *args)` in a worker thread in one committed transaction
(`db.run`); tests pass one bound to their own engine.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import auth
from .login_guard import LoginGuard, Refused

RunDb = Callable[..., Awaitable[Any]]
THROTTLE = auth.Throttle()


@dataclass(frozen=True)
class Outcome:
    """A log-in or sign-up: `opened` on success, else the message to show."""

    opened: auth.Opened | None = None
    error: str = ""


# log_in and sign_up: (guard, run_db, username, password, client, ttl) -> Outcome.
Action = Callable[[LoginGuard, RunDb, str, str, str, timedelta], Awaitable[Outcome]]


async def log_in(
    guard: LoginGuard,
    run_db: RunDb,
    username: str,
    password: str,
    client: str,
    ttl: timedelta,
    policy: auth.Throttle = THROTTLE,
) -> Outcome:
    if not isinstance(username, str) or not isinstance(password, str):
        return Outcome(error=auth.WRONG)  # a hand-made event, not the form
    username = username.strip().lower()
    if len(username) > auth.USERNAME_MAX or len(password) > auth.PASSWORD_MAX:
        return Outcome(error=auth.WRONG)
    try:
        guard.check_rate(client)
        async with guard.slot() as hash_:
            attempt: auth.Attempt = await run_db(auth.admit, username, client, policy, time.time())
            if attempt.retry_after:
                return Outcome(error=auth.refused(attempt.retry_after))
            ok: bool = await hash_(auth.check_password, password, attempt.password_hash)
    except Refused as exc:
        return Outcome(error=auth.refused(exc.retry_after))
    if not ok or attempt.account_id is None:
        return Outcome(error=auth.WRONG)
    return Outcome(await run_db(auth.open_session, attempt.account_id, client, ttl))


async def sign_up(
    guard: LoginGuard,
    run_db: RunDb,
    username: str,
    password: str,
    client: str,
    ttl: timedelta,
) -> Outcome:
    if not isinstance(username, str) or not isinstance(password, str):
        return Outcome(error="Enter a username and a password.")
    try:
        name = auth.check_sign_up(username, password)
        guard.check_rate(client)
        async with guard.slot() as hash_:
            hashed: str = await hash_(auth.hash_password, password)
        user: auth.User = await run_db(auth.create_account, name, hashed)
    except auth.AuthError as exc:
        return Outcome(error=str(exc))
    except Refused as exc:
        return Outcome(error=auth.refused(exc.retry_after))
    return Outcome(await run_db(auth.open_session, user.id, client, ttl))
