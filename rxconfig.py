"""Reflex's config. Shipped in the wheel as a top-level module, so the installed app finds it
from any directory; the config itself is built in working/reflex_config.py."""

from working.reflex_config import build

config = build()
