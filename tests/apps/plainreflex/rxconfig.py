"""An rxconfig.py as `reflex init` writes it, plus what an app deployed elsewhere carries: its
own ports, the domain it was served on, its database file. Unchanged for the runtime."""

import reflex as rx

config = rx.Config(
    app_name="plainreflex",
    frontend_port=3000,
    backend_port=8000,
    api_url="https://www.example.com",
    db_url="sqlite:///reflex.db",
    plugins=[rx.plugins.RadixThemesPlugin(), rx.plugins.SitemapPlugin()],
)
