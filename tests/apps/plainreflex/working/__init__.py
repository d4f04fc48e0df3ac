"""The app, importable as `working.app` (how many Reflex apps expose it)."""

from .working import app

__all__ = ["app"]
