"""The failures a user can cause, each printed by the CLI as one line with its own exit code."""

from __future__ import annotations

from .contract import exit_code


class WorkingError(Exception):
    """Base class: the message is the whole story, printed as one line, no traceback."""

    exit_code_name = "error"

    @property
    def exit_code(self) -> int:
        return exit_code(self.exit_code_name)


class ConfigError(WorkingError):
    """An environment variable is missing or malformed."""

    exit_code_name = "config"

    def __init__(self, var: str, problem: str, expected: str) -> None:
        self.var = var
        super().__init__(f"{var} {problem}; expected {expected}")


class DependencyError(WorkingError):
    """An outside dependency is missing: the database or Redis in time, Node.js for a build."""

    exit_code_name = "dependency"


class MigrationError(WorkingError):
    """Applying the database migrations failed; the server must not start on a half schema."""

    exit_code_name = "migration"


class FrontendError(WorkingError):
    """The static frontend export is missing or could not be built."""

    exit_code_name = "error"
