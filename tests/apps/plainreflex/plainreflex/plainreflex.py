"""A counter with a dynamic component, an external stylesheet and a guestbook in rx.Model,
written the ordinary way: rx.session(), and a history from `reflex db makemigrations`."""

import os

import reflex as rx

# Where the app's web font stylesheet lives; a test points it at a second local origin.
STYLESHEET = os.environ.get(
    "PLAINREFLEX_STYLESHEET", "https://fonts.googleapis.com/css2?family=Inter&display=swap"
)


class CounterState(rx.State):
    count: int = 0

    @rx.event
    def increment(self) -> None:
        self.count += 1

    @rx.var
    def badge(self) -> rx.Component:
        # A component built on the server and rendered by the browser: Reflex's dynamic
        # components, evaluated from a data: module (state.js evalReactComponent).
        return rx.badge(f"clicked {self.count} times", id="badge", color_scheme="green")


class Entry(rx.Model, table=True):
    text: str


class GuestbookState(rx.State):
    entries: list[str] = []

    @rx.event
    def load_entries(self) -> None:
        with rx.session() as session:
            self.entries = [e.text for e in session.exec(Entry.select().order_by(Entry.id)).all()]

    @rx.var(cache=False)
    def signed(self) -> str:
        # Read from the database whenever the state is sent, the page's first render included.
        with rx.session() as session:
            count = len(session.exec(Entry.select()).all())
        return f"{count} signed"

    @rx.event
    def sign(self, form: dict[str, str]) -> None:
        text = form.get("text", "").strip()
        if not text:
            return
        with rx.session() as session:
            session.add(Entry(text=text))
            session.commit()
        self.load_entries()


def index() -> rx.Component:
    return rx.container(
        rx.heading("Plain Reflex", id="styled"),
        rx.button("Click", id="click", on_click=CounterState.increment),
        rx.text(CounterState.count, id="count"),
        CounterState.badge,
        rx.form(
            rx.input(name="text", id="entry-text", placeholder="Sign the guestbook"),
            rx.button("Sign", id="entry-submit", type="submit"),
            on_submit=GuestbookState.sign,
            reset_on_submit=True,
        ),
        rx.text(GuestbookState.signed, id="signed"),
        rx.foreach(GuestbookState.entries, lambda text: rx.text(text, class_name="entry")),
    )


app = rx.App(stylesheets=[STYLESHEET])
app.add_page(index, title="Plain Reflex", on_load=GuestbookState.load_entries)
