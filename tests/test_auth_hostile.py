"""Log-in under attack, against a real database (SQLite and PostgreSQL): the throttle counts
every failure exactly and checks no password once it applies, it slows down the client that
fails and nobody else, it answers the same for names that exist and names that do not, and
sessions start from a one-time ticket and are purged when they expire."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from margins import within
from sqlalchemy import func, select

from working import auth, login
from working.login_guard import LoginGuard, Refused
from working.models import LoginSession, LoginThrottle

TTL = timedelta(hours=1)
PASSWORD = "correct horse"


def _run_db(tx):  # type: ignore[no-untyped-def]
    """What working.py's `_db` is, bound to the test's engine: a worker thread per call."""

    async def run_db(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(tx, fn, *args)

    return run_db


def _open_guard() -> LoginGuard:
    # Rates out of the way: these tests are about the database throttle.
    return LoginGuard(workers=4, queue=1000, rate=100_000, rate_total=100_000)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords actually checked (scrypt run), recorded around the real function."""
    seen: list[str] = []
    lock = threading.Lock()
    real = auth.check_password

    def counted(password: str, stored: str | None) -> bool:
        with lock:
            seen.append(password)
        return real(password, stored)

    monkeypatch.setattr(auth, "check_password", counted)
    return seen


def test_parallel_wrong_passwords_are_counted_exactly(tx, checks: list[str]) -> None:  # type: ignore[no-untyped-def]
    """60 wrong passwords for one account at once from one client: exactly `free` of them are
    checked and counted, every other one is refused without a check, none is lost."""
    tx(auth.sign_up, "alice", PASSWORD)
    policy = auth.Throttle(free=5, base_s=60, max_s=900)
    guard, run_db = _open_guard(), _run_db(tx)

    async def flood() -> list[login.Outcome]:
        return await asyncio.gather(
            *(
                login.log_in(guard, run_db, "alice", f"wrong {n}", "10.0.0.1", TTL, policy)
                for n in range(60)
            )
        )

    outcomes = asyncio.run(flood())
    errors = [o.error for o in outcomes]
    assert errors.count(auth.WRONG) == policy.free, errors
    assert all(e.startswith("Too many attempts; try again in ") for e in errors if e != auth.WRONG)
    assert len(checks) == policy.free
    row = tx(lambda s: s.get(LoginThrottle, ("alice", "10.0.0.1")))
    assert row.failures == policy.free
    # Even the right password is not checked until the delay is over.
    refused = asyncio.run(login.log_in(guard, run_db, "alice", PASSWORD, "10.0.0.1", TTL, policy))
    assert refused.opened is None
    assert refused.error.startswith("Too many attempts")
    assert len(checks) == policy.free


def test_another_client_logs_in_while_an_attacker_hammers_the_account(tx) -> None:  # type: ignore[no-untyped-def]
    tx(auth.sign_up, "alice", PASSWORD)
    policy = auth.Throttle(free=3, base_s=60, max_s=900)
    guard, run_db = _open_guard(), _run_db(tx)

    async def scenario() -> tuple[list[login.Outcome], login.Outcome]:
        attack = asyncio.gather(
            *(
                login.log_in(guard, run_db, "alice", f"guess {n}", "203.0.113.9", TTL, policy)
                for n in range(20)
            )
        )
        owner = login.log_in(guard, run_db, "alice", PASSWORD, "198.51.100.7", TTL, policy)
        return await asyncio.gather(attack, owner)  # type: ignore[return-value]

    attacked, owner = asyncio.run(scenario())
    assert owner.opened is not None
    assert owner.opened.user.username == "alice"
    assert sum(o.error == auth.WRONG for o in attacked) == policy.free
    # The owner's success cleared only the owner's row; the attacker stays slowed down.
    assert tx(lambda s: s.get(LoginThrottle, ("alice", "198.51.100.7"))) is None
    assert tx(lambda s: s.get(LoginThrottle, ("alice", "203.0.113.9"))).failures == policy.free


def test_existing_and_unknown_names_answer_alike(tx) -> None:  # type: ignore[no-untyped-def]
    tx(auth.sign_up, "alice", PASSWORD)
    policy = auth.Throttle(free=2, base_s=30, max_s=900)
    guard, run_db = _open_guard(), _run_db(tx)

    def answers(name: str) -> list[str]:
        async def attempts() -> list[str]:
            return [
                (
                    await login.log_in(guard, run_db, name, "wrong pass", "10.9.9.9", TTL, policy)
                ).error
                for _ in range(4)
            ]

        return asyncio.run(attempts())

    known, unknown = answers("alice"), answers("nobody-here")
    assert known == unknown
    assert known[:2] == [auth.WRONG, auth.WRONG]
    assert known[2].startswith("Too many attempts; try again in ")


def test_delays_grow_and_a_success_resets_them(tx) -> None:  # type: ignore[no-untyped-def]
    tx(auth.sign_up, "alice", PASSWORD)
    policy = auth.Throttle(free=2, base_s=10, max_s=35)
    t0 = 1_000_000.0

    def admit(at: float) -> float:
        return tx(auth.admit, "alice", "10.1.1.1", policy, t0 + at).retry_after

    assert admit(0) == 0  # failure 1
    assert admit(1) == 0  # failure 2: the delay starts now
    assert admit(2) == pytest.approx(9)  # refused until 1 + 10
    assert admit(11.5) == 0  # one more attempt after the delay, which then doubles
    assert admit(12) == pytest.approx(19.5)  # until 11.5 + 20
    assert admit(31.6) == 0
    assert admit(32) == pytest.approx(35 - 0.4)  # 40 capped at max_s = 35
    assert tx(lambda s: s.get(LoginThrottle, ("alice", "10.1.1.1"))).failures == 4
    # Another client, or another name from this client, starts from zero.
    assert tx(auth.admit, "alice", "10.1.1.2", policy, t0 + 33).retry_after == 0
    assert tx(auth.admit, "bob", "10.1.1.1", policy, t0 + 33).retry_after == 0
    account_id = tx(auth.admit, "alice", "10.1.1.1", policy, t0 + 70).account_id
    tx(auth.open_session, account_id, "10.1.1.1", TTL)
    assert tx(lambda s: s.get(LoginThrottle, ("alice", "10.1.1.1"))) is None


def test_a_ticket_is_redeemed_once_for_the_cookie_token(tx) -> None:  # type: ignore[no-untyped-def]
    user = tx(auth.sign_up, "alice", PASSWORD)
    opened = tx(auth.open_session, user.id, "10.0.0.1", TTL)
    # Until it is redeemed the session has no cookie token, only the tab's id.
    assert tx(auth.session_by_id, opened.session_id).user == user
    redeemed = tx(auth.redeem_ticket, opened.ticket)
    assert redeemed is not None
    assert tx(auth.redeem_ticket, opened.ticket) is None
    assert tx(auth.session_for_token, redeemed.token).session_id == opened.session_id
    assert tx(auth.redeem_ticket, "forged") is None
    stored = tx(lambda s: s.get(LoginSession, opened.session_id))
    assert redeemed.token not in (stored.token_hash, stored.ticket_hash)
    tx(auth.log_out, redeemed.token)
    assert tx(auth.session_by_id, opened.session_id) is None
    assert tx(auth.session_for_token, redeemed.token) is None


def test_expired_sessions_and_old_throttles_are_purged(tx) -> None:  # type: ignore[no-untyped-def]
    user = tx(auth.sign_up, "alice", PASSWORD)
    live = tx(auth.open_session, user.id, "10.0.0.1", TTL)
    expired = tx(auth.open_session, user.id, "10.0.0.1", timedelta(seconds=-1))
    assert tx(auth.session_by_id, expired.session_id) is None
    tx(auth.admit, "mallory", "10.0.0.2", auth.Throttle(), 1000.0)  # long ago
    purged = tx(auth.purge)
    assert (purged.sessions, purged.throttles) == (1, 1)
    assert tx(auth.session_by_id, live.session_id).user == user
    assert tx(lambda s: s.scalar(select(func.count()).select_from(LoginSession))) == 1


def test_a_hand_made_event_without_strings_gets_the_plain_answer() -> None:
    async def no_db(fn: Any, *args: Any) -> Any:
        raise AssertionError("nothing to look up")

    guard = _open_guard()
    assert asyncio.run(login.log_in(guard, no_db, 5, None, "10.0.0.1", TTL)).error == auth.WRONG  # type: ignore[arg-type]
    signed = asyncio.run(login.sign_up(guard, no_db, {"a": 1}, [], "10.0.0.1", TTL))  # type: ignore[arg-type]
    assert signed.error == "Enter a username and a password."


def test_attempts_are_limited_per_client_and_overall() -> None:
    guard = LoginGuard(workers=1, queue=0, rate=3, rate_total=5)
    for _ in range(3):
        guard.check_rate("10.0.0.1")
    with pytest.raises(Refused) as refused:
        guard.check_rate("10.0.0.1")
    assert 0 < refused.value.retry_after <= 20  # 3 a minute: one every 20 s
    guard.check_rate("10.0.0.2")
    guard.check_rate("10.0.0.3")
    with pytest.raises(Refused):  # 5 a minute in all
        guard.check_rate("10.0.0.4")


def test_a_client_refused_for_everyone_keeps_its_own_allowance() -> None:
    guard = LoginGuard(workers=1, queue=0, rate=2, rate_total=120)  # overall: one every 0.5 s
    for n in range(120):  # a flood from many addresses uses up the overall rate
        guard.check_rate(f"10.1.0.{n}")
    for _ in range(3):
        with pytest.raises(Refused) as refused:
            guard.check_rate("10.0.0.1")
        assert refused.value.retry_after <= 0.5  # the overall rate's wait, not its own 30 s
    time.sleep(1.05)
    # Its own two a minute were not spent on those refusals: both are there once there is room.
    guard.check_rate("10.0.0.1")
    guard.check_rate("10.0.0.1")


def test_the_hashing_pool_refuses_at_once_when_full() -> None:
    guard = LoginGuard(workers=1, queue=1, rate=1000, rate_total=1000)
    release = threading.Event()

    async def scenario() -> tuple[float, list[bool]]:
        async def hold() -> bool:
            async with guard.slot() as hash_:
                return await hash_(release.wait, 30)

        holders = [asyncio.create_task(hold()) for _ in range(2)]  # one running, one queued
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        with pytest.raises(Refused):
            async with guard.slot():
                pass
        took = time.perf_counter() - started
        release.set()
        return took, await asyncio.gather(*holders)

    took, held = asyncio.run(scenario())
    assert took < within(0.05)
    assert held == [True, True]

    async def again() -> bool:
        async with guard.slot() as hash_:
            return await hash_(bool, 1)

    assert asyncio.run(again()) is True


def test_the_fifth_failure_throttles_and_the_fourth_does_not(tx) -> None:  # type: ignore[no-untyped-def]
    # README: "after 5, that client waits". The number is written out here, not read from
    # auth.Throttle: a test that reads the constant follows any change to it.
    tx(auth.sign_up, "four", PASSWORD)
    tx(auth.sign_up, "five", PASSWORD)
    guard, run_db = _open_guard(), _run_db(tx)

    def attempt(name: str, password: str) -> login.Outcome:
        return asyncio.run(login.log_in(guard, run_db, name, password, "10.0.0.1", TTL))

    for _ in range(4):
        assert attempt("four", "wrong password").error == auth.WRONG
    assert attempt("four", PASSWORD).opened is not None
    for _ in range(5):
        assert attempt("five", "wrong password").error == auth.WRONG
    refused = attempt("five", PASSWORD)
    assert refused.opened is None
    assert refused.error.startswith("Too many attempts; try again in ")
