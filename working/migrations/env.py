"""Alembic's environment for the app's history: the runtime migrates with the app's metadata."""

from working.models import Base
from working.runtime.migrations import run_env

run_env(Base.metadata)
