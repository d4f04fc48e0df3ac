"""The app, importable as `plainreflex.app` (how many Reflex apps expose it)."""

from .plainreflex import app

__all__ = ["app"]
