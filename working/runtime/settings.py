"""Typed settings, parsed once from the environment at the edge (the CLI and rxconfig.py).

`load(environ)` takes a plain mapping so tests build settings from dicts; every problem is a
ConfigError naming the variable, the bad value (unless secret) and the expected form.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import SplitResult, urlsplit

from . import app_settings
from .contract import contract, env_default
from .errors import ConfigError
from .masking import mask_url, register_secret

_T = TypeVar("_T")
Environment = Literal["dev", "prod"]
LogFormat = Literal["text", "json"]

_ENVIRONMENTS: dict[str, Environment] = {"dev": "dev", "prod": "prod", "production": "prod"}
_LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}


@dataclass(frozen=True)
class Settings:
    environment: Environment
    port: int
    host: str
    # The SQLAlchemy URL, password included: kept out of repr, printed only through `masked()`.
    database_url: str = field(repr=False)
    database_configured: bool
    data_dir: Path
    redis_url: str | None = field(repr=False)
    db_wait_timeout: float
    run_migrations: bool
    shutdown_timeout: float
    log_level: str
    log_format: LogFormat
    allowed_origins: tuple[str, ...]
    web_concurrency: int
    session_ttl: int
    login_workers: int
    login_queue: int
    login_rate: int
    login_rate_total: int
    forwarded_allow_ips: tuple[str, ...]
    max_connections_per_client: int
    state_idle_ttl: float
    frontend_dir: Path
    git_commit: str
    app_version: str
    # The app's own settings (working/settings.toml), by name; secrets among them are printed
    # only through `app_masked()`.
    app_env: Mapping[str, str] = field(repr=False, hash=False)

    @property
    def database_backend(self) -> str:
        return "postgresql" if self.database_url.startswith("postgresql") else "sqlite"

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    def masked(self) -> dict[str, str]:
        """The effective settings as environment-style text, secrets masked (for check-config)."""
        return {
            "REFLEX_ENV": self.environment,
            "PORT": str(self.port),
            "HOST": self.host,
            "DATABASE_URL": mask_url(self.database_url),
            "DATA_DIR": str(self.data_dir),
            "REDIS_URL": mask_url(self.redis_url) if self.redis_url else "",
            "DB_WAIT_TIMEOUT": _seconds(self.db_wait_timeout),
            "RUN_MIGRATIONS": str(self.run_migrations).lower(),
            "SHUTDOWN_TIMEOUT": _seconds(self.shutdown_timeout),
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": self.log_format,
            "ALLOWED_ORIGINS": ",".join(self.allowed_origins),
            "WEB_CONCURRENCY": str(self.web_concurrency),
            "SESSION_TTL": str(self.session_ttl),
            "LOGIN_WORKERS": str(self.login_workers),
            "LOGIN_QUEUE": str(self.login_queue),
            "LOGIN_RATE": str(self.login_rate),
            "LOGIN_RATE_TOTAL": str(self.login_rate_total),
            "FORWARDED_ALLOW_IPS": ",".join(self.forwarded_allow_ips),
            "MAX_CONNECTIONS_PER_CLIENT": str(self.max_connections_per_client),
            "STATE_IDLE_TTL": _seconds(self.state_idle_ttl),
            "FRONTEND_DIR": str(self.frontend_dir),
            "GIT_COMMIT": self.git_commit,
            "APP_VERSION": self.app_version,
        }

    def app_masked(self) -> dict[str, str]:
        """The app's own settings as environment-style text, secrets masked."""
        return app_settings.masked(app_settings.declared(), self.app_env)


def load(environ: Mapping[str, str], *, deployed: bool = True) -> Settings:
    """`deployed=False` for a build: the app's required settings may be missing there."""
    env = _Reader(environ)
    environment = env.choice("REFLEX_ENV", _ENVIRONMENTS)
    data_dir = Path(env.text("DATA_DIR"))
    database_url = env.optional("DATABASE_URL")
    redis_url = env.optional("REDIS_URL")
    web_concurrency = env.integer("WEB_CONCURRENCY", minimum=1, maximum=64)
    if web_concurrency > 1 and not redis_url:
        raise ConfigError(
            "WEB_CONCURRENCY",
            f"is {web_concurrency} but REDIS_URL is not set",
            "1, or set REDIS_URL so that the workers share Reflex state",
        )
    shutdown_timeout = env.seconds("SHUTDOWN_TIMEOUT", minimum=1)
    return Settings(
        environment=environment,
        port=_port(env),
        host=env.text("HOST"),
        database_url=_database_url(database_url, data_dir),
        database_configured=database_url is not None,
        data_dir=data_dir,
        redis_url=_redis_url(redis_url),
        db_wait_timeout=env.seconds("DB_WAIT_TIMEOUT", minimum=0),
        run_migrations=env.boolean("RUN_MIGRATIONS"),
        shutdown_timeout=shutdown_timeout,
        log_level=env.choice("LOG_LEVEL", {lvl: lvl for lvl in _LOG_LEVELS}),
        log_format=env.choice("LOG_FORMAT", {"text": "text", "json": "json"}),
        allowed_origins=_origins(env.text("ALLOWED_ORIGINS"), environment),
        web_concurrency=web_concurrency,
        session_ttl=int(env.seconds("SESSION_TTL", minimum=60, maximum=90 * 86400)),
        login_workers=env.integer("LOGIN_WORKERS", minimum=1, maximum=64),
        login_queue=env.integer("LOGIN_QUEUE", minimum=0, maximum=10000),
        login_rate=env.integer("LOGIN_RATE", minimum=1, maximum=1_000_000),
        login_rate_total=env.integer("LOGIN_RATE_TOTAL", minimum=1, maximum=1_000_000),
        forwarded_allow_ips=_proxies(env.text("FORWARDED_ALLOW_IPS")),
        max_connections_per_client=env.integer(
            "MAX_CONNECTIONS_PER_CLIENT", minimum=1, maximum=100_000
        ),
        state_idle_ttl=env.seconds("STATE_IDLE_TTL", minimum=1, maximum=86400),
        frontend_dir=Path(env.text("FRONTEND_DIR")),
        git_commit=env.text("GIT_COMMIT") or "unknown",
        app_version=env.text("APP_VERSION") or _package_version(),
        app_env=app_settings.load(environ, app_settings.declared(), deployed=deployed),
    )


def app_setting(name: str) -> str:
    """One of the app's own settings, as checked at start: how the app reads what it declares
    in working/settings.toml (reading os.environ directly works too, unchecked)."""
    values = from_environ().app_env
    if name not in values:
        raise ConfigError(name, "is not declared", f"an [env.{name}] table in {app_settings.SHOWN}")
    return values[name]


def load_port(environ: Mapping[str, str]) -> int:
    """Only the port: what the healthcheck needs, without validating everything else."""
    return _port(_Reader(environ))


# False in a process that builds rather than runs the app (build-frontend, lock-frontend,
# new-migration): it has no deployment (the Nix sandbox, CI), so the app's required settings,
# such as an API key, may be missing there and read as empty.
_deployed = True


def for_build() -> None:
    """Call before the first `from_environ()` of a process that builds the app."""
    global _deployed
    _deployed = False
    from_environ.cache_clear()


@cache
def from_environ() -> Settings:
    """The process's settings, parsed once. Only the edges (CLI, rxconfig.py) call this."""
    return load(os.environ, deployed=_deployed)


class _Reader:
    """Reads one variable at a time, falling back to the contract's default when it is unset.

    Set but empty is an error, except where the contract gives empty a meaning (`empty_ok`):
    Coolify passes a blank `${DATABASE_URL:?}` on as "" instead of refusing the deploy, and an
    app that took that for "unset" would quietly run on a SQLite file nobody backs up."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        if name not in self._environ:
            return None
        value = self._environ[name].strip()
        if value:
            return value
        spec = contract()["env"][name]
        if spec.get("empty_ok"):
            return None
        default = f" ({spec['default']})" if spec["default"] else ""
        raise ConfigError(
            name,
            "is set but empty",
            f"a value ({spec['help']}), or no {name} at all for its default{default}",
        )

    def text(self, name: str) -> str:
        return self.optional(name) or env_default(name)

    def choice(self, name: str, choices: Mapping[str, _T]) -> _T:
        value = self.text(name).lower()
        if value not in choices:
            raise ConfigError(name, f"is {value!r}", " | ".join(choices))
        return choices[value]

    def boolean(self, name: str) -> bool:
        value = self.text(name).lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(name, f"is {value!r}", "true or false")

    def integer(self, name: str, *, minimum: int, maximum: int | None = None) -> int:
        value = self.text(name)
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"is {value!r}", "a whole number") from None
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"{minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            raise ConfigError(name, f"is {number}", f"a whole number from {bounds}")
        return number

    def seconds(self, name: str, *, minimum: float, maximum: float = 86400) -> float:
        value = self.text(name)
        try:
            number = float(value.removesuffix("s"))
        except ValueError:
            raise ConfigError(name, f"is {value!r}", "a number of seconds, e.g. 30") from None
        if not minimum <= number <= maximum:
            raise ConfigError(name, f"is {value!r}", f"seconds from {minimum:g} to {maximum:g}")
        return number


def _port(env: _Reader) -> int:
    port_var = (
        "PORT" if env.optional("PORT") or not env.optional("FRONTEND_PORT") else "FRONTEND_PORT"
    )
    port = env.integer(port_var, minimum=1, maximum=65535)
    frontend = env.optional("FRONTEND_PORT")
    if port_var == "PORT" and frontend is not None and frontend != str(port):
        raise ConfigError(
            "FRONTEND_PORT",
            f"is {frontend} but PORT is {port}",
            "one of them only (FRONTEND_PORT is an alias of PORT)",
        )
    backend = env.optional("BACKEND_PORT")
    if backend is not None and backend != str(port):
        raise ConfigError(
            "BACKEND_PORT",
            f"is {backend} but the app serves frontend and backend together on {port_var}={port}",
            f"BACKEND_PORT unset (or equal to {port}); route all paths to port {port}",
        )
    return port


# Without DATABASE_URL: this file in DATA_DIR.
SQLITE_FILE = "working.db"


def _database_url(value: str | None, data_dir: Path) -> str:
    if value is None:
        return f"sqlite:///{data_dir / SQLITE_FILE}"
    form = "postgresql://USER:PASSWORD@HOST:5432/DBNAME or sqlite:///PATH"
    parts = _parse_url("DATABASE_URL", value, form, {"sqlite", *_POSTGRES_SCHEMES})
    if parts.scheme.lower() == "sqlite":
        if not parts.path.strip("/"):
            raise ConfigError("DATABASE_URL", "names no SQLite file", form)
        return value
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError("DATABASE_URL", f"names no host ({mask_url(value)})", form)
    if not parts.path.strip("/"):
        raise ConfigError("DATABASE_URL", f"names no database ({mask_url(value)})", form)
    return "postgresql+psycopg://" + value.split("://", 1)[1]


def _redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    form = "redis://[:PASSWORD@]HOST:6379/0 (or rediss://)"
    parts = _parse_url("REDIS_URL", value, form, _REDIS_SCHEMES)
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise ConfigError("REDIS_URL", f"names no host ({mask_url(value)})", form)
    return value


def _parse_url(var: str, value: str, form: str, schemes: set[str]) -> SplitResult:
    """Split a URL, remember its password as a secret, and check its scheme."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ConfigError(var, "is not a valid URL", form) from None
    register_secret(parts.password)
    if parts.scheme.lower() not in schemes:
        shown = mask_url(value)
        raise ConfigError(var, f"has the unsupported scheme {parts.scheme!r} ({shown})", form)
    return parts


def _origins(value: str, environment: Environment) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        if origin == "*":
            if environment == "prod":
                raise ConfigError(
                    "ALLOWED_ORIGINS",
                    "is * in prod",
                    "the exact origins, e.g. https://app.example.com (empty means same origin)",
                )
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ConfigError(
                "ALLOWED_ORIGINS",
                f"contains {origin!r}",
                "comma-separated origins like https://app.example.com",
            )
    return origins


def _proxies(value: str) -> tuple[str, ...]:
    """Addresses or networks of trusted proxies; * trusts every client's forwarded headers."""
    entries = tuple(e.strip() for e in value.split(",") if e.strip())
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                "FORWARDED_ALLOW_IPS",
                f"contains {entry!r}",
                "comma-separated IP addresses or networks, e.g. 127.0.0.1,10.0.1.0/24",
            ) from None
    return entries


def _seconds(value: float) -> str:
    return f"{value:g}"


def _package_version() -> str:
    try:
        return version(contract()["service"])
    except PackageNotFoundError:
        return "0+unknown"
