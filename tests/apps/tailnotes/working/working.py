"""The guestbook: plain HTML elements styled with Tailwind utilities, one table, one event.

Small on purpose: it shares nothing with the demo but the runtime it is served by.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from sqlalchemy import select
from sqlalchemy.orm import Session

from working.runtime import db
from working.runtime.settings import app_setting

from .models import Entry

NAME_MAX = 40
MESSAGE_MAX = 280


def _entries(session: Session) -> list[dict[str, str]]:
    rows = session.scalars(select(Entry).order_by(Entry.id.desc()).limit(50))
    return [{"name": row.name, "message": row.message} for row in rows]


def _sign(session: Session, name: str, message: str) -> list[dict[str, str]]:
    session.add(Entry(name=name, message=message))
    session.flush()
    return _entries(session)


class Guestbook(rx.State):
    entries: list[dict[str, str]] = []
    error: str = ""

    @rx.var
    def title(self) -> str:
        # The deployment's GUESTBOOK_TITLE (working/settings.toml), read by the serving process.
        return app_setting("GUESTBOOK_TITLE")

    @rx.var
    def count_label(self) -> str:
        count = len(self.entries)
        return f"{count} {'entry' if count == 1 else 'entries'}"

    @rx.event
    async def load(self):
        self.entries = await db.run(_entries)

    @rx.event
    async def sign(self, form: dict[str, Any]):
        name = str(form.get("name", "")).strip()
        message = str(form.get("message", "")).strip()
        if not name or not message:
            self.error = "Both a name and a message, please."
        elif len(name) > NAME_MAX or len(message) > MESSAGE_MAX:
            self.error = f"Names up to {NAME_MAX} characters, messages up to {MESSAGE_MAX}."
        else:
            self.entries = await db.run(_sign, name, message)
            self.error = ""


_FIELD = "w-full rounded-lg border border-slate-300 px-3 py-2"


def index() -> rx.Component:
    return rx.el.main(
        rx.el.header(
            rx.el.h1(Guestbook.title, id="title", class_name="text-3xl font-bold"),
            rx.el.p(Guestbook.count_label, id="entry-count", class_name="text-sm"),
            id="banner",
            class_name="bg-[#0f766e] text-white p-6 rounded-xl",
        ),
        rx.el.form(
            rx.el.input(id="name", name="name", placeholder="Your name", class_name=_FIELD),
            rx.el.textarea(
                id="message", name="message", placeholder="Say hello", class_name=_FIELD
            ),
            rx.el.button(
                "Sign",
                id="sign",
                type="submit",
                class_name="rounded-lg bg-slate-900 px-4 py-2 text-white",
            ),
            on_submit=Guestbook.sign,
            reset_on_submit=True,
            class_name="flex flex-col gap-3 my-6",
        ),
        rx.cond(
            Guestbook.error,
            rx.el.p(Guestbook.error, id="sign-error", class_name="text-red-700"),
        ),
        rx.el.ul(
            rx.foreach(
                Guestbook.entries,
                lambda entry: rx.el.li(
                    rx.el.span(entry["name"], class_name="entry-name font-semibold"),
                    rx.el.span(": "),
                    rx.el.span(entry["message"], class_name="entry-message"),
                    class_name="entry border-b border-slate-200 py-2",
                ),
            ),
            id="entries",
        ),
        class_name="mx-auto max-w-xl p-8 font-sans",
    )


def health_page() -> rx.Component:
    # The runtime serves its own JSON at /health, ahead of any page: this one is never shown,
    # and the build says so.
    return rx.el.p("The guestbook is fine.", class_name="p-8")


app = rx.App()
app.add_page(index, route="/", title="Guestbook", on_load=Guestbook.load)
app.add_page(health_page, route="/health", title="Health")
