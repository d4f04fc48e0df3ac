"""The Reflex app: pages and state. Accounts and notes live in auth.py and notes.py.

Database work runs in a worker thread (`db.run`) and password hashing in its own bounded pool
(login_guard.py), so neither stalls the event loop that every connected browser shares, and
hashing never delays a database call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.middleware.middleware import Middleware
from reflex.state import BaseState, StateUpdate
from reflex_base.event import Event, get_hydrate_event

from . import auth, housekeeping, login, login_guard, notes, session_cookie
from .notes import Listing
from .runtime import db, health
from .runtime.settings import app_setting, from_environ

log = logging.getLogger("working.app")


@cache
def _guard() -> login_guard.LoginGuard:
    return login_guard.LoginGuard.from_settings(from_environ())


def _ttl() -> timedelta:
    return timedelta(seconds=from_environ().session_ttl)


class AuthState(rx.State):
    username: str = ""
    auth_error: str = ""
    # The login session this tab holds, by id: kept on the server (a backend var), never sent
    # to the page. The browser's HttpOnly cookie (session_cookie.py) restores it on hydrate.
    _session_id: int = 0

    async def _user(self) -> auth.User | None:
        """Who is logged in, checked against the database on every call (expiry, log out)."""
        found = await db.run(auth.session_by_id, self._session_id)
        return found.user if found is not None else None

    async def _restore(self, cookie_token: str) -> None:
        """On hydrate, before the state is sent: the session the cookie names, else the one
        this tab holds if it is still valid, else nobody; a tab whose session was revoked
        (logged out elsewhere, expired) forgets its user's name and notes."""
        found = None
        if cookie_token:
            found = await db.run(auth.session_for_token, cookie_token)
        if found is None and self._session_id:
            found = await db.run(auth.session_by_id, self._session_id)
        if found is None or found.user.username != self.username:
            await self._forget()
        if found is not None:
            self._session_id = found.session_id
            self.username = found.user.username

    async def _forget(self) -> None:
        (await self.get_state(NotesState)).reset()
        self.reset()

    def _client(self) -> str:
        return login_guard.client_address(self.router.headers.raw_headers)

    @rx.event
    async def redirect_if_logged_in(self):
        if await self._user() is not None:
            return rx.redirect("/notes")
        return None

    @rx.event
    async def sign_up(self, form: dict[str, Any]):
        return await self._open(login.sign_up, form)

    @rx.event
    async def log_in(self, form: dict[str, Any]):
        return await self._open(login.log_in, form)

    async def _open(self, action: login.Action, form: dict[str, Any]):
        """Run a log-in or sign-up from the form; on success the browser redeems the ticket."""
        outcome = await action(
            _guard(),
            db.run,
            form.get("username", ""),
            form.get("password", ""),
            self._client(),
            _ttl(),
        )
        if outcome.opened is None:
            self.auth_error = outcome.error
            return None
        self.auth_error = ""
        self._session_id = outcome.opened.session_id
        self.username = outcome.opened.user.username
        return rx.call_script(
            session_cookie.ticket_script(outcome.opened.ticket), callback=AuthState.enter_notes
        )

    @rx.event
    def enter_notes(self, redeemed: bool):
        """After the ticket script: the cookie is set (or, if not, only reloads lose the log-in)."""
        if not redeemed:
            log.warning("a log-in's session cookie could not be set; the tab stays logged in")
        return rx.redirect("/notes")

    @rx.event
    async def log_out(self):
        if self._session_id:
            await db.run(auth.log_out, "", self._session_id)
        await self._forget()
        return rx.call_script(session_cookie.logout_script("/login"))


class NotesState(AuthState):
    notes: list[dict[str, str]] = []
    draft: str = ""
    note_error: str = ""

    @rx.var
    def draft_length(self) -> str:
        return f"{len(self.draft)} / {notes.NOTE_MAX}"

    @rx.event
    def set_draft(self, value: str):
        # A tab's state stays small whoever drives it: no draft before login, and no more of one
        # than the UI needs to say it is too long.
        if not self.username:
            return
        self.draft = value[: notes.NOTE_MAX + 1]
        if len(value) <= notes.NOTE_MAX:
            self.note_error = ""

    @rx.event
    async def load(self):
        return await self._act(notes.read)

    @rx.event
    async def add(self, form: dict[str, Any]):
        redirect = await self._act(notes.add, str(form.get("body", self.draft)))
        if not self.note_error and self.draft:
            self.draft = ""
        return redirect

    @rx.event
    async def remove(self, note_id: str):
        return await self._act(notes.delete_note, str(note_id))

    async def _act(self, action: Callable[..., Listing | None], *args: str):
        """Run the action for this tab's session and read the notes back: one transaction and
        one thread hop per event, since every event costs the one event loop all browsers
        share. Only what changed is set: each var set is sent, and recomputed on."""
        page = await db.run_sql(action, self._session_id, *args)
        if page is None:
            await self._forget()
            return rx.redirect("/login")
        if self.username != page.username:
            self.username = page.username
        if self.note_error != page.error:
            self.note_error = page.error
        self.notes = [
            {"id": str(n.id), "body": n.body, "created_at": n.created_at} for n in page.notes
        ]
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


class SiteState(rx.State):
    @rx.var
    def notice(self) -> str:
        # Computed by the serving process, not baked into the export: the notice follows the
        # deployment's SITE_NOTICE (working/settings.toml) without a rebuild.
        return app_setting("SITE_NOTICE")


def site_notice() -> rx.Component:
    return rx.cond(
        SiteState.notice != "",
        rx.callout(SiteState.notice, icon="info", role="status", id="site-notice", width="100%"),
    )


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
        rx.container(rx.vstack(site_notice(), *children, spacing="4"), size="2"),
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


class RestoreSession(Middleware):
    """Runs before every hydrate (a page load or reconnect), before the state is sent."""

    async def preprocess(self, app: rx.App, state: BaseState, event: Event) -> StateUpdate | None:
        if event.name != get_hydrate_event(state) or app.sio is None:
            return None
        environ = app.sio.get_environ(state.router.session.session_id, session_cookie.EVENT_PATH)
        auth_state = await state.get_state(AuthState)
        await auth_state._restore(session_cookie.token_from_environ(environ))
        return None


app = rx.App(
    backend_exception_handler=log_event_error,
    # The HttpOnly session cookie's endpoints, and its removal from /_event's headers.
    api_transformer=session_cookie.transformer(from_environ().allowed_origins),
)
app.add_middleware(RestoreSession())
app.register_lifespan_task(housekeeping.purge_periodically)
app.add_page(index, route="/", title="working")
app.add_page(login_page, route="/login", title="Log in", on_load=AuthState.redirect_if_logged_in)
app.add_page(signup_page, route="/signup", title="Sign up", on_load=AuthState.redirect_if_logged_in)
app.add_page(notes_page, route="/notes", title="Notes", on_load=NotesState.load)
app.add_page(status_page, route="/status", title="Status", on_load=StatusState.refresh)
