"""Accounts and login sessions: scrypt password hashes, hashed session tokens, throttling.

Functions here are synchronous and take a SQLAlchemy session; the Reflex state calls them in a
worker thread so that hashing and I/O never block the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Account, LoginSession

USERNAME_MIN, USERNAME_MAX = 3, 32
PASSWORD_MIN, PASSWORD_MAX = 8, 128
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")

# scrypt at N=2^14, r=8: 16 MiB per hash, tens of milliseconds; OWASP's minimum for scrypt.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024

# After this many consecutive failures an account is locked, for a time that doubles each time.
THROTTLE_AFTER = 5
_LOCK_BASE = timedelta(seconds=30)
_LOCK_MAX = timedelta(minutes=15)


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


def sign_up(db: Session, username: str, password: str) -> User:
    username = validate_username(username)
    validate_password(password)
    account = Account(
        username=username,
        password_hash=hash_password(password),
        created_at=_now(),
        failed_logins=0,
    )
    db.add(account)
    try:
        db.flush()
    except IntegrityError:
        raise AuthError("That username is taken.") from None
    return User(account.id, account.username)


@dataclass(frozen=True)
class Login:
    """What a login attempt came to. A failure is a value, not an exception, so that the
    failed-attempt count it records is committed with the transaction."""

    user: User | None = None
    token: str = ""
    error: str = ""


def log_in(db: Session, username: str, password: str, ttl: timedelta) -> Login:
    """Check the password and open a session."""
    username = username.strip().lower()
    wrong = Login(error="Wrong username or password.")
    if len(username) > USERNAME_MAX or len(password) > PASSWORD_MAX:
        return wrong
    now = _now()
    account = db.scalars(
        select(Account).where(Account.username == username).with_for_update()
    ).first()
    if account is None:
        verify_password(password, _dummy_hash())
        return wrong
    if account.locked_until is not None and account.locked_until > now:
        return Login(error=throttle_message(account.locked_until - now))
    if not verify_password(password, account.password_hash):
        account.failed_logins += 1
        if account.failed_logins >= THROTTLE_AFTER:
            lock = min(_LOCK_BASE * 2 ** (account.failed_logins - THROTTLE_AFTER), _LOCK_MAX)
            account.locked_until = now + lock
        return wrong
    account.failed_logins = 0
    account.locked_until = None
    token = secrets.token_urlsafe(32)
    db.add(
        LoginSession(
            account_id=account.id,
            token_hash=_token_hash(token),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return Login(User(account.id, account.username), token)


def throttle_message(retry_after: timedelta) -> str:
    seconds = max(1, int(retry_after.total_seconds()))
    return f"Too many failed logins for this account; try again in {seconds} s."


def user_for_token(db: Session, token: str) -> User | None:
    """The user a session token belongs to, or None when unknown or expired."""
    if not token or len(token) > 128:
        return None
    row = db.execute(
        select(Account.id, Account.username, LoginSession.expires_at)
        .join(LoginSession, LoginSession.account_id == Account.id)
        .where(LoginSession.token_hash == _token_hash(token))
    ).first()
    if row is None or row.expires_at <= _now():
        return None
    return User(row.id, row.username)


def log_out(db: Session, token: str) -> None:
    db.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))


def purge_expired_sessions(db: Session) -> int:
    statement = delete(LoginSession).where(LoginSession.expires_at <= _now())
    # A DML statement's result is a CursorResult, though Session.execute is typed as Result.
    result = cast("CursorResult[Any]", db.execute(statement))
    return result.rowcount or 0


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)
