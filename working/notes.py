"""Notes: each belongs to one account, and every statement is scoped to the account of a live
login session, checked in that same statement.

A notes event costs one round trip to read (the session's account and its notes, one query)
and two to change (the write, then that read), in one transaction. The statements are built
once and run on a Core connection: on every event, building them and the ORM's work per
statement were half of the server's CPU (bench/profile-events.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Integer, Text, bindparam, delete, func, insert, select

from . import auth
from .models import Account, LoginSession, Note, UTCDateTime

NOTE_MAX = 1000
NOTES_PER_ACCOUNT_MAX = 500


@dataclass(frozen=True)
class NoteView:
    id: int
    body: str
    created_at: str


@dataclass(frozen=True)
class Listing:
    """What a tab shows after a notes event: whose notes, the notes, what went wrong."""

    username: str
    notes: list[NoteView]
    error: str = ""


_SESSION = bindparam("session_id", type_=Integer)
_NOW = bindparam("now", type_=UTCDateTime())
_LIVE = auth.live(_SESSION, _NOW)

# The session's account and its notes, newest first; a live session without notes is one row
# of NULL notes, a revoked or expired one no row.
_READ = (
    select(Account.username, Note.id, Note.body, Note.created_at)
    .select_from(LoginSession)
    .join(Account, Account.id == LoginSession.account_id)
    .outerjoin(Note, Note.account_id == Account.id)
    .where(_LIVE)
    .order_by(Note.created_at.desc(), Note.id.desc())
)

# For the session's account, under its cap; nothing is written for a dead session.
_ADD = (
    insert(Note)
    .from_select(
        ["account_id", "body", "created_at"],
        select(LoginSession.account_id, bindparam("body", type_=Text), _NOW).where(
            _LIVE,
            select(func.count())
            .select_from(Note)
            .where(Note.account_id == LoginSession.account_id)
            .scalar_subquery()
            < NOTES_PER_ACCOUNT_MAX,
        ),
    )
    .returning(Note.id)
)

_DELETE = delete(Note).where(
    Note.id == bindparam("note_id", type_=Integer),
    Note.account_id == select(LoginSession.account_id).where(_LIVE).scalar_subquery(),
)


def read(c: Connection, session_id: int, error: str = "") -> Listing | None:
    """The session's notes, or None when the session is revoked or expired."""
    rows = c.execute(_READ, {"session_id": session_id, "now": datetime.now(UTC)}).all()
    if not rows:
        return None
    notes = [NoteView(r.id, r.body, _shown(r.created_at)) for r in rows if r.id is not None]
    return Listing(rows[0].username, notes, error)


def add(c: Connection, session_id: int, body: str) -> Listing | None:
    body = body.strip()
    if not body:
        return read(c, session_id, "A note cannot be empty.")
    if len(body) > NOTE_MAX:
        return read(
            c,
            session_id,
            f"A note can have at most {NOTE_MAX} characters (this one has {len(body)}).",
        )
    params = {"session_id": session_id, "now": datetime.now(UTC), "body": body}
    # An insert construct's rowcount is -1 on psycopg (SQLAlchemy 2): the returned id tells.
    if c.execute(_ADD, params).scalar() is not None:
        return read(c, session_id)
    # Nothing written: a dead session (read says so) or an account at its cap.
    return read(
        c, session_id, f"You have {NOTES_PER_ACCOUNT_MAX} notes, the most one account can keep."
    )


def delete_note(c: Connection, session_id: int, note_id: str) -> Listing | None:
    """Delete the note if, and only if, it belongs to the session's account."""
    # The id comes from the page: digits within the column's range, or no note of anyone's.
    deleted = 0
    if note_id.isascii() and note_id.isdigit() and len(note_id) <= 9:
        params = {"session_id": session_id, "now": datetime.now(UTC), "note_id": int(note_id)}
        deleted = c.execute(_DELETE, params).rowcount
    return read(c, session_id, "" if deleted else "That note does not exist.")


def _shown(created_at: datetime) -> str:
    return created_at.strftime("%Y-%m-%d %H:%M UTC")
