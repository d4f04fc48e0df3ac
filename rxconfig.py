"""Reflex's config: what the app declares (its plugins and theme, and any other setting it owns).

The runtime adds what it owns (app name, ports, database, Redis, state manager, CORS) from the
environment, and refuses those here. Shipped in the wheel as a top-level module, so the installed
app finds it from any directory (working/runtime/reflex_config.py).
"""

import reflex as rx

from working.runtime.reflex_config import app_config

config = app_config(
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
    show_built_with_reflex=False,
)
