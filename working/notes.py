"""Notes: each belongs to one account, and every query is scoped to its owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from .models import Note

NOTE_MAX = 1000
NOTES_PER_ACCOUNT_MAX = 500


class NoteError(Exception):
    """A message fit to show the user as it is."""


@dataclass(frozen=True)
class NoteView:
    id: int
    body: str
    created_at: str


def list_notes(db: Session, account_id: int) -> list[NoteView]:
    # Columns, not ORM objects: this runs on every note event, and mapping each row to a Note
    # (identity map, instance state) is work in a thread that competes with the event loop.
    rows = db.execute(
        select(Note.id, Note.body, Note.created_at)
        .where(Note.account_id == account_id)
        .order_by(Note.created_at.desc(), Note.id.desc())
    )
    return [NoteView(n.id, n.body, n.created_at.strftime("%Y-%m-%d %H:%M UTC")) for n in rows]


def add_note(db: Session, account_id: int, body: str) -> NoteView:
    body = body.strip()
    if not body:
        raise NoteError("A note cannot be empty.")
    if len(body) > NOTE_MAX:
        raise NoteError(
            f"A note can have at most {NOTE_MAX} characters (this one has {len(body)})."
        )
    now = datetime.now(UTC)
    # The cap's count and the insert in one statement: one database round trip, not two.
    count = select(func.count()).select_from(Note).where(Note.account_id == account_id)
    row = select(
        literal(account_id, Note.account_id.type),
        literal(body, Note.body.type),
        literal(now, Note.created_at.type),
    ).where(count.scalar_subquery() < NOTES_PER_ACCOUNT_MAX)
    note_id = db.scalar(
        insert(Note).from_select(["account_id", "body", "created_at"], row).returning(Note.id)
    )
    if note_id is None:
        raise NoteError(f"You have {NOTES_PER_ACCOUNT_MAX} notes, the most one account can keep.")
    return NoteView(note_id, body, now.strftime("%Y-%m-%d %H:%M UTC"))


def delete_note(db: Session, account_id: int, note_id: int) -> bool:
    """Delete the note if, and only if, it belongs to this account."""
    statement = delete(Note).where(Note.id == note_id, Note.account_id == account_id)
    # A DML statement's result is a CursorResult, though Session.execute is typed as Result.
    result = cast("CursorResult[Any]", db.execute(statement))
    return bool(result.rowcount)
