"""A counter with a dynamic component and an external stylesheet, plus what a typical app has
around it: components with a state of their own (rx.ComponentState), a guestbook in rx.Model
(rx.session(), a history from `reflex db makemigrations`, a computed var that queries it),
uploads and downloads, a background task, a dynamic route, browser storage, a shared asset and
a data file beside the module. Written the ordinary way."""

import asyncio
import csv
import os
from pathlib import Path
from typing import Any

import reflex as rx

# Where the app's web font stylesheet lives; a test points it at a second local origin.
STYLESHEET = os.environ.get(
    "PLAINREFLEX_STYLESHEET", "https://fonts.googleapis.com/css2?family=Inter&display=swap"
)
# Beside the module, not the working directory: the app may run from anywhere.
FRUITS = Path(__file__).parent / "data" / "fruits.csv"


def _fruits() -> list[str]:
    with FRUITS.open(newline="") as file:
        return [row["name"] for row in csv.DictReader(file)]


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


class Stepper(rx.ComponentState):
    """A component with a state of its own per instance: Reflex makes each instance's state
    class when the page is evaluated."""

    steps: int = 0

    @rx.event
    def step(self) -> None:
        self.steps += 1

    @classmethod
    def get_component(cls, *children: rx.Component, **props: Any) -> rx.Component:
        name = props.pop("name")
        return rx.hstack(
            rx.button("Step", id=f"{name}-step", on_click=cls.step),
            rx.text(cls.steps, id=f"{name}-steps"),
        )


class ColorPicker(rx.Component):
    """A third-party React component from npm (react-colorful), wrapped the Reflex way."""

    library = "react-colorful@5.6.1"
    tag = "HexColorPicker"
    color: rx.Var[str]
    on_change: rx.EventHandler[lambda color: [color]]


class Greeting(rx.Component):
    """The app's own JavaScript component, in assets/greeting.js."""

    library = rx.asset("greeting.js").importable_path
    tag = "Greeting"
    name: rx.Var[str]


class ColorState(rx.State):
    color: str = "#aabbcc"

    @rx.event
    def set_color(self, color: str) -> None:
        self.color = color


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
    def sign(self, form: dict[str, Any]) -> None:
        text = str(form.get("text", "")).strip()
        if not text:
            return
        with rx.session() as session:
            session.add(Entry(text=text))
            session.commit()
        self.load_entries()


class TickState(rx.State):
    ticks: int = 0
    running: bool = False

    @rx.event(background=True)
    async def run(self):
        async with self:
            if self.running:
                return
            self.running = True
            self.ticks = 0
        for _ in range(3):
            await asyncio.sleep(0.2)
            async with self:
                self.ticks += 1
        async with self:
            self.running = False


class PrefsState(rx.State):
    nickname: str = rx.LocalStorage("", name="nickname")
    flavour: str = rx.Cookie("", name="flavour", max_age=3600)

    @rx.event
    def set_nickname(self, value: str) -> None:
        self.nickname = value

    @rx.event
    def set_flavour(self, value: str) -> None:
        self.flavour = value


class FilesState(rx.State):
    names: list[str] = []

    @rx.event
    async def handle_upload(self, files: list[rx.UploadFile]):
        for file in files:
            name = Path(file.name or "upload").name
            (rx.get_upload_dir() / name).write_bytes(await file.read())
            if name not in self.names:
                self.names.append(name)

    @rx.event
    def download(self, name: str):
        return rx.download(url=f"/_upload/{name}", filename=name)


def index() -> rx.Component:
    return rx.container(
        rx.heading("Plain Reflex", id="styled"),
        rx.button("Click", id="click", on_click=CounterState.increment),
        rx.text(CounterState.count, id="count"),
        CounterState.badge,
        Stepper.create(name="left"),
        Stepper.create(name="right"),
        rx.form(
            rx.input(name="text", id="entry-text", placeholder="Sign the guestbook"),
            rx.button("Sign", id="entry-submit", type="submit"),
            on_submit=GuestbookState.sign,
            reset_on_submit=True,
        ),
        rx.text(GuestbookState.signed, id="signed"),
        rx.foreach(GuestbookState.entries, lambda text: rx.text(text, class_name="entry")),
        ColorPicker.create(color=ColorState.color, on_change=ColorState.set_color),
        rx.text(ColorState.color, id="color"),
        Greeting.create(name="plain Reflex"),
        rx.image(src=rx.asset("badge.svg", shared=True), id="shared-asset", width="24px"),
        rx.text(", ".join(_fruits()), id="fruits"),
        rx.button("Tick", id="tick", on_click=TickState.run),
        rx.text(TickState.ticks, id="ticks"),
        rx.input(id="nickname", value=PrefsState.nickname, on_change=PrefsState.set_nickname),
        rx.input(id="flavour", value=PrefsState.flavour, on_change=PrefsState.set_flavour),
        rx.link("Item 7", href="/item/7", id="item-link"),
        rx.link("Files", href="/files", id="files-link"),
    )


def files() -> rx.Component:
    return rx.container(
        rx.upload(rx.text("Drop a file"), id="upload"),
        rx.button(
            "Upload", id="send", on_click=FilesState.handle_upload(rx.upload_files("upload"))
        ),
        rx.foreach(
            FilesState.names,
            lambda name: rx.hstack(
                rx.link(name, href=rx.get_upload_url(name), class_name="uploaded"),
                rx.button("Download", class_name="download", on_click=FilesState.download(name)),
            ),
        ),
    )


def item() -> rx.Component:
    # The route's argument, as Reflex exposes it: a var of the root state.
    return rx.container(rx.heading("Item ", rx.State.item_id, id="item"))


app = rx.App(stylesheets=[STYLESHEET])
app.add_page(index, title="Plain Reflex", on_load=GuestbookState.load_entries)
app.add_page(files, route="/files", title="Files")
app.add_page(item, route="/item/[item_id]", title="Item")
