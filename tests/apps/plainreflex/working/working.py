"""A counter with a dynamic component and an external stylesheet, written the ordinary way."""

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


def index() -> rx.Component:
    return rx.container(
        rx.heading("Plain Reflex", id="styled"),
        rx.button("Click", id="click", on_click=CounterState.increment),
        rx.text(CounterState.count, id="count"),
        CounterState.badge,
    )


app = rx.App(stylesheets=[STYLESHEET])
app.add_page(index, title="Plain Reflex")
