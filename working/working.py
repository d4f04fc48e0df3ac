"""The Reflex app: pages and state. Accounts and notes live in auth.py and notes.py.

Database work runs in a worker thread (`_db`), so scrypt and I/O never stall the event loop
that every connected browser shares.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import reflex as rx
from reflex.event import EventSpec
from sqlalchemy.orm import Session

from . import auth, db, health, notes
from .settings import from_environ

_T = TypeVar("_T")
log = logging.getLogger("working.app")

SESSION_COOKIE = "working_session"


async def _db(fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(session, *args)` in a worker thread, in one committed transaction."""

    def run() -> _T:
        with db.session() as s:
            return fn(s, *args)

    return await asyncio.to_thread(run)


class AuthState(rx.State):
    session_token: str = rx.Cookie(
        "", name=SESSION_COOKIE, path="/", max_age=from_environ().session_ttl, same_site="strict"
    )
    username: str = ""
    auth_error: str = ""

    async def _user(self) -> auth.User | None:
        """Who is logged in, checked against the database on every call (expiry, log out)."""
        return await _db(auth.user_for_token, self.session_token)

    @rx.event
    async def redirect_if_logged_in(self):
        if await self._user() is not None:
            return rx.redirect("/notes")
        return None

    @rx.event
    async def sign_up(self, form: dict[str, Any]):
        try:
            await _db(auth.sign_up, form.get("username", ""), form.get("password", ""))
        except auth.AuthError as exc:
            self.auth_error = str(exc)
            return None
        return await self.log_in(form)

    @rx.event
    async def log_in(self, form: dict[str, Any]):
        ttl = timedelta(seconds=from_environ().session_ttl)
        login = await _db(auth.log_in, form.get("username", ""), form.get("password", ""), ttl)
        if login.user is None:
            self.auth_error = login.error
            return None
        self.auth_error = ""
        self.session_token = login.token
        self.username = login.user.username
        return rx.redirect("/notes")

    @rx.event
    async def log_out(self):
        if self.session_token:
            await _db(auth.log_out, self.session_token)
        self.reset()
        self.session_token = ""
        return rx.redirect("/login")


class NotesState(AuthState):
    notes: list[dict[str, str]] = []
    draft: str = ""
    note_error: str = ""

    @rx.var
    def draft_length(self) -> str:
        return f"{len(self.draft)} / {notes.NOTE_MAX}"

    @rx.event
    def set_draft(self, value: str):
        self.draft = value
        if len(value) <= notes.NOTE_MAX:
            self.note_error = ""

    @rx.event
    async def load(self):
        return await self._act(None)

    @rx.event
    async def add(self, form: dict[str, Any]):
        body = form.get("body", self.draft)
        redirect = await self._act(lambda s, user: notes.add_note(s, user.id, body))
        if not self.note_error:
            self.draft = ""
        return redirect

    @rx.event
    async def remove(self, note_id: str):
        def delete(s: Session, user: auth.User) -> None:
            if not note_id.isdigit() or not notes.delete_note(s, user.id, int(note_id)):
                raise notes.NoteError("That note does not exist.")

        return await self._act(delete)

    async def _act(self, action: Callable[[Session, auth.User], object] | None):
        """Check the session, run the action, and read the notes back: one transaction and one
        thread hop per event, since every event costs the one event loop all browsers share."""

        token = self.session_token

        def run(s: Session) -> tuple[auth.User | None, list[notes.NoteView], str]:
            user = auth.user_for_token(s, token)
            if user is None:
                return None, [], ""
            error = ""
            if action is not None:
                try:
                    action(s, user)
                except notes.NoteError as exc:  # raised before anything is written
                    error = str(exc)
            return user, notes.list_notes(s, user.id), error

        user, rows, self.note_error = await _db(run)
        if user is None:
            self.username = ""
            return rx.redirect("/login")
        self.username = user.username
        self.notes = [{"id": str(n.id), "body": n.body, "created_at": n.created_at} for n in rows]
        return None


DATABASE_DOWN = (
    "The database is unreachable right now: signing in and notes are unavailable until it is "
    "back. Nothing you saved before is lost."
)


class StatusState(rx.State):
    status: str = "unknown"
    report: str = ""
    outage: str = ""

    @rx.event
    async def refresh(self):
        monitor = health.current() or health.install(from_environ())
        code, body = await monitor.report()
        self.status = f"{body['status']} ({code})"
        self.report = json.dumps(body, indent=2)
        self.outage = DATABASE_DOWN if body["database"]["status"] != "connected" else ""


def navbar() -> rx.Component:
    return rx.hstack(
        rx.heading("working", size="5"),
        rx.spacer(),
        rx.link("Notes", href="/notes"),
        rx.link("Status", href="/status"),
        rx.cond(
            AuthState.username != "",
            rx.hstack(
                rx.text(AuthState.username, id="current-user"),
                rx.button("Log out", id="logout", on_click=AuthState.log_out, variant="soft"),
                align="center",
            ),
            rx.link("Log in", href="/login"),
        ),
        width="100%",
        align="center",
        padding="1em",
    )


def layout(*children: rx.Component) -> rx.Component:
    return rx.vstack(
        navbar(),
        rx.container(rx.vstack(*children, spacing="4"), size="2"),
        width="100%",
    )


def error_callout(message: rx.Var[str], id_: str) -> rx.Component:
    return rx.cond(message != "", rx.callout(message, color_scheme="red", role="alert", id=id_))


def credentials_form(title: str, submit: str, handler: rx.EventHandler, id_: str) -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.heading(title, size="6"),
            rx.input(name="username", id="username", placeholder="username"),
            rx.input(name="password", id="password", placeholder="password", type="password"),
            rx.button(submit, id=f"{id_}-submit", type="submit"),
            error_callout(AuthState.auth_error, "auth-error"),
            spacing="3",
        ),
        on_submit=handler,
        id=id_,
    )


def index() -> rx.Component:
    return layout(
        rx.heading("Notes that stay yours", size="7"),
        rx.text("Sign up, log in, and keep short notes in the database."),
        rx.hstack(rx.link("Log in", href="/login"), rx.link("Sign up", href="/signup")),
    )


def login_page() -> rx.Component:
    return layout(
        credentials_form("Log in", "Log in", AuthState.log_in, "login-form"),
        rx.link("No account yet? Sign up", href="/signup"),
    )


def signup_page() -> rx.Component:
    return layout(
        credentials_form("Sign up", "Create account", AuthState.sign_up, "signup-form"),
        rx.text(
            f"Username {auth.USERNAME_MIN}-{auth.USERNAME_MAX} characters, "
            f"password {auth.PASSWORD_MIN}-{auth.PASSWORD_MAX}.",
            size="2",
        ),
    )


def note_card(note: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.vstack(
                rx.text(note["body"], class_name="note-body", white_space="pre-wrap"),
                rx.text(note["created_at"], size="1", color_scheme="gray"),
            ),
            rx.spacer(),
            rx.button(
                "Delete",
                on_click=NotesState.remove(note["id"]),
                class_name="note-delete",
                color_scheme="red",
                variant="soft",
            ),
            width="100%",
        ),
        width="100%",
        class_name="note",
    )


def notes_page() -> rx.Component:
    return layout(
        rx.heading("Your notes", size="6"),
        rx.form(
            rx.vstack(
                rx.text_area(
                    name="body",
                    id="note-body",
                    value=NotesState.draft,
                    on_change=NotesState.set_draft,
                    placeholder="Write a note",
                ),
                rx.hstack(
                    rx.button("Add note", id="note-submit", type="submit"),
                    rx.text(NotesState.draft_length, size="1", id="note-length"),
                    align="center",
                ),
                error_callout(NotesState.note_error, "note-error"),
                width="100%",
            ),
            on_submit=NotesState.add,
            width="100%",
        ),
        rx.vstack(rx.foreach(NotesState.notes, note_card), width="100%", id="notes"),
    )


def status_page() -> rx.Component:
    return layout(
        rx.heading("Status", size="6"),
        error_callout(StatusState.outage, "outage"),
        rx.text("Live result of GET /health: ", rx.code(StatusState.status, id="health-status")),
        rx.el.pre(StatusState.report, id="health-report"),
        rx.button("Refresh", on_click=StatusState.refresh),
    )


def log_event_error(exception: Exception) -> EventSpec:
    """An event handler failed: one masked log line (the formatter folds the traceback), and a
    message for the user that gives nothing away but says when the database is the cause."""
    if db.is_outage(exception):
        # Expected while the database is down; /health logs the outage once, not per click.
        log.warning("event handler failed: database unreachable")
        return rx.toast.error(
            "The database is unreachable right now; please try again shortly (see Status).",
            id="database-down",
        )
    log.error("event handler failed: %s", exception, exc_info=exception)
    return rx.toast.error("Something went wrong; please try again.")


app = rx.App(backend_exception_handler=log_event_error)
app.add_page(index, route="/", title="working")
app.add_page(login_page, route="/login", title="Log in", on_load=AuthState.redirect_if_logged_in)
app.add_page(signup_page, route="/signup", title="Sign up", on_load=AuthState.redirect_if_logged_in)
app.add_page(notes_page, route="/notes", title="Notes", on_load=NotesState.load)
app.add_page(status_page, route="/status", title="Status", on_load=StatusState.refresh)
