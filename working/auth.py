"""Accounts and login sessions: scrypt password hashes, hashed session tokens, throttling.

Functions here are synchronous and take a SQLAlchemy session (or none, for hashing); login.py
runs the database ones in worker threads and the hashing in its own bounded pool, so that
neither blocks the event loop and hashing never delays a database call.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Account, LoginSession, LoginThrottle

USERNAME_MIN, USERNAME_MAX = 3, 32
PASSWORD_MIN, PASSWORD_MAX = 8, 128
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")

# scrypt at N=2^14, r=8: 16 MiB per hash, tens of milliseconds; OWASP's minimum for scrypt.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024

# Messages: one for a wrong name or password, one for any refusal (throttled, rate-limited,
# busy), the same whether or not the account exists, so neither tells which names exist.
WRONG = "Wrong username or password."


def refused(retry_after: float) -> str:
    return f"Too many attempts; try again in {max(1, math.ceil(retry_after))} s."


@dataclass(frozen=True)
class Throttle:
    """Failed logins of one name from one client: `free` of them pass, then each attempt waits
    a delay that doubles from `base_s` up to `max_s`. Keyed by (name, client), an attacker's
    failures slow down that attacker only; the account's owner elsewhere is not locked out."""

    free: int = 5
    base_s: int = 1
    max_s: int = 900


# A ticket is redeemed by the browser right after the login event: seconds are plenty.
TICKET_TTL = timedelta(seconds=60)
# Throttle rows untouched this long are forgotten (their delay is over long before).
_THROTTLE_KEEP_S = 86400


class AuthError(Exception):
    """A message fit to show the user as it is."""


@dataclass(frozen=True)
class User:
    id: int
    username: str


def validate_username(username: str) -> str:
    username = username.strip().lower()
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        raise AuthError(
            f"Username must be {USERNAME_MIN} to {USERNAME_MAX} characters "
            f"(it has {len(username)})."
        )
    if not _USERNAME.fullmatch(username):
        raise AuthError("Username may contain only letters, digits, '.', '_' and '-'.")
    return username


def validate_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AuthError(
            f"Password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters "
            f"(it has {len(password)})."
        )
    return password


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(candidate, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


@cache
def _dummy_hash() -> str:
    """Compared against when the username is unknown, so that timing does not tell which names
    exist. Made on first use: a scrypt hash costs a twentieth of the process's start."""
    return hash_password(secrets.token_urlsafe(16))


def check_sign_up(username: str, password: str) -> str:
    """The normalised username, or AuthError: checked before anything is hashed."""
    username = validate_username(username)
    validate_password(password)
    return username


def create_account(db: Session, username: str, password_hash: str) -> User:
    account = Account(username=username, password_hash=password_hash, created_at=_now())
    db.add(account)
    try:
        db.flush()
    except IntegrityError:
        raise AuthError("That username is taken.") from None
    return User(account.id, account.username)


def sign_up(db: Session, username: str, password: str) -> User:
    """Check, hash and create in one call (tests and scripts; the app hashes in its own pool)."""
    return create_account(db, check_sign_up(username, password), hash_password(password))


@dataclass(frozen=True)
class Attempt:
    """A login attempt admitted by the throttle (retry_after 0) or refused (retry_after > 0).
    `password_hash` is None when no account has the name: check against a dummy hash then."""

    retry_after: float = 0.0
    account_id: int | None = None
    password_hash: str | None = None


def admit(db: Session, username: str, client: str, policy: Throttle, now: float) -> Attempt:
    """Count the attempt as a failure before the password is checked, in one atomic statement.

    Counting first is what serialises attempts per (name, client) on SQLite and PostgreSQL
    alike: the increment is a single INSERT .. ON CONFLICT DO UPDATE .. RETURNING (a row lock
    on PostgreSQL, the write lock on SQLite), and the attempt that reaches `free` starts the
    delay in that same statement, so attempts running concurrently are refused without a
    check. A correct password deletes the row (`open_session`)."""
    row = LoginThrottle.__table__.c
    grown = case(
        (row.failures + 1 < policy.free, 0),
        (row.delay_s == 0, policy.base_s),
        (row.delay_s * 2 > policy.max_s, policy.max_s),
        else_=row.delay_s * 2,
    )
    first_delay = 0 if policy.free > 1 else policy.base_s
    insert = _insert_for(db)(LoginThrottle).values(
        username=username,
        client=client,
        failures=1,
        delay_s=first_delay,
        blocked_until=now + first_delay if first_delay else 0.0,
        updated_at=now,
    )
    counted = db.execute(
        insert.on_conflict_do_update(
            index_elements=[row.username, row.client],
            set_={
                "failures": row.failures + 1,
                "delay_s": grown,
                "blocked_until": case((grown == 0, 0.0), else_=now + grown),
                "updated_at": now,
            },
            where=row.blocked_until <= now,
        ).returning(row.failures)
    ).first()
    if counted is None:
        blocked_until = db.scalar(
            select(row.blocked_until).where(row.username == username, row.client == client)
        )
        return Attempt(retry_after=max(1.0, (blocked_until or now) - now))
    account = db.execute(
        select(Account.id, Account.password_hash).where(Account.username == username)
    ).first()
    if account is None:
        return Attempt()
    return Attempt(account_id=account.id, password_hash=account.password_hash)


def check_password(password: str, stored: str | None) -> bool:
    """What runs in the hashing pool: an unknown name costs the same scrypt as a known one."""
    if stored is None:
        verify_password(password, _dummy_hash())
        return False
    return verify_password(password, stored)


@dataclass(frozen=True)
class Opened:
    """A session just opened: the tab holds its id (server side); the browser redeems the
    one-time ticket for the HttpOnly cookie."""

    session_id: int
    user: User
    ticket: str


def open_session(
    db: Session, account_id: int, client: str, ttl: timedelta, now: datetime | None = None
) -> Opened:
    now = now or _now()
    account = db.get(Account, account_id)
    if account is None:
        raise AuthError(WRONG)
    db.execute(
        delete(LoginThrottle).where(
            LoginThrottle.username == account.username, LoginThrottle.client == client
        )
    )
    ticket = secrets.token_urlsafe(32)
    session = LoginSession(
        account_id=account.id,
        token_hash=None,
        ticket_hash=_token_hash(ticket),
        ticket_expires_at=now + TICKET_TTL,
        created_at=now,
        expires_at=now + ttl,
    )
    db.add(session)
    db.flush()
    return Opened(session.id, User(account.id, account.username), ticket)


@dataclass(frozen=True)
class Redeemed:
    token: str
    expires_at: datetime


def redeem_ticket(db: Session, ticket: str) -> Redeemed | None:
    """Exchange a one-time ticket for the session's cookie token (a new secret, stored hashed).
    One UPDATE: a ticket redeemed twice, or late, gives nothing the second time."""
    if not ticket or len(ticket) > 128:
        return None
    now = _now()
    token = secrets.token_urlsafe(32)
    row = db.execute(
        update(LoginSession)
        .where(
            LoginSession.ticket_hash == _token_hash(ticket),
            LoginSession.ticket_expires_at > now,
            LoginSession.expires_at > now,
        )
        .values(token_hash=_token_hash(token), ticket_hash=None, ticket_expires_at=None)
        .returning(LoginSession.expires_at)
    ).first()
    return Redeemed(token, row.expires_at) if row is not None else None


@dataclass(frozen=True)
class Found:
    session_id: int
    user: User


def session_for_token(db: Session, token: str) -> Found | None:
    """The session a cookie token opens, or None when unknown or expired."""
    if not token or len(token) > 128:
        return None
    return _found(db, LoginSession.token_hash == _token_hash(token))


def live(session_id: Any, now: Any) -> ColumnElement[bool]:
    """A login session that exists and has not expired (what `session_by_id` finds), as a
    condition on LoginSession: a statement acting for a tab checks its session in the same
    round trip (notes.py)."""
    return and_(LoginSession.id == session_id, LoginSession.expires_at > now)


def session_by_id(db: Session, session_id: int) -> Found | None:
    """The session a tab holds (by id, kept server side), or None when revoked or expired."""
    if not session_id:
        return None
    return _found(db, LoginSession.id == session_id)


def _found(db: Session, where: ColumnElement[bool]) -> Found | None:
    row = db.execute(
        select(
            LoginSession.id,
            LoginSession.expires_at,
            Account.id.label("account_id"),
            Account.username,
        )
        .join(Account, LoginSession.account_id == Account.id)
        .where(where)
    ).first()
    if row is None or row.expires_at <= _now():
        return None
    return Found(row.id, User(row.account_id, row.username))


def user_for_token(db: Session, token: str) -> User | None:
    """The user a cookie token belongs to, or None when unknown or expired."""
    found = session_for_token(db, token)
    return found.user if found is not None else None


def log_out(db: Session, token: str = "", session_id: int = 0) -> None:
    """End a session, named by its cookie token or by its id."""
    if token:
        db.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))
    if session_id:
        db.execute(delete(LoginSession).where(LoginSession.id == session_id))


@dataclass(frozen=True)
class Purged:
    sessions: int
    throttles: int


def purge_expired_sessions(db: Session) -> int:
    return purge(db).sessions


def purge(db: Session, now: datetime | None = None) -> Purged:
    """Forget expired sessions and long-quiet throttle rows (see housekeeping.py)."""
    now = now or _now()
    sessions = _rowcount(db, delete(LoginSession).where(LoginSession.expires_at <= now))
    throttles = _rowcount(
        db,
        delete(LoginThrottle).where(LoginThrottle.updated_at < now.timestamp() - _THROTTLE_KEEP_S),
    )
    return Purged(sessions, throttles)


def _rowcount(db: Session, statement: Any) -> int:
    # A DML statement's result is a CursorResult, though Session.execute is typed as Result.
    result = cast("CursorResult[Any]", db.execute(statement))
    return result.rowcount or 0


def _insert_for(db: Session):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT (SQLite 3.24+, PostgreSQL 9.5+)."""
    if db.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)
