"""The fixture app's Reflex config: Tailwind v4, no Radix Themes (the demo's opposite)."""

import reflex as rx

from working.runtime.reflex_config import app_config

config = app_config(
    plugins=[rx.plugins.TailwindV4Plugin()],
    disable_plugins=[rx.plugins.SitemapPlugin],
    show_built_with_reflex=False,
)
