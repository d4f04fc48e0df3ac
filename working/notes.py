"""Notes: each belongs to one account, and every query is scoped to its owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
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
    rows = db.scalars(
        select(Note)
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
    count = db.scalar(select(func.count()).select_from(Note).where(Note.account_id == account_id))
    if (count or 0) >= NOTES_PER_ACCOUNT_MAX:
        raise NoteError(f"You have {NOTES_PER_ACCOUNT_MAX} notes, the most one account can keep.")
    note = Note(account_id=account_id, body=body, created_at=datetime.now(UTC))
    db.add(note)
    db.flush()
    return NoteView(note.id, note.body, note.created_at.strftime("%Y-%m-%d %H:%M UTC"))


def delete_note(db: Session, account_id: int, note_id: int) -> bool:
    """Delete the note if, and only if, it belongs to this account."""
    statement = delete(Note).where(Note.id == note_id, Note.account_id == account_id)
    # A DML statement's result is a CursorResult, though Session.execute is typed as Result.
    result = cast("CursorResult[Any]", db.execute(statement))
    return bool(result.rowcount)
