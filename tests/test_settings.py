"""Settings parsed from plain dicts: defaults from the contract, one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from working.runtime.contract import contract
from working.runtime.errors import ConfigError
from working.runtime.settings import load


def test_defaults_come_from_the_contract() -> None:
    settings = load({})
    assert settings.port == contract()["http"]["port"] == 3000
    assert settings.environment == "prod"
    assert settings.database_backend == "sqlite"
    assert settings.database_url == f"sqlite:///{Path('data') / 'working.db'}"
    assert settings.shutdown_timeout == contract()["shutdown"]["timeout_s"]
    assert settings.shutdown_timeout < contract()["shutdown"]["grace_period_s"]
    assert settings.run_migrations is True
    assert settings.web_concurrency == 1


def test_postgres_url_is_normalised_to_psycopg_and_masked() -> None:
    settings = load({"DATABASE_URL": "postgres://app:hunter22@db:5432/app"})
    assert settings.database_url == "postgresql+psycopg://app:hunter22@db:5432/app"
    assert settings.masked()["DATABASE_URL"] == "postgresql+psycopg://app:***@db:5432/app"
    assert "hunter22" not in repr(settings)


def test_frontend_port_is_an_alias_of_port() -> None:
    assert load({"FRONTEND_PORT": "8080"}).port == 8080
    assert load({"PORT": "8080", "FRONTEND_PORT": "8080", "BACKEND_PORT": "8080"}).port == 8080


def test_production_is_an_alias_of_prod() -> None:
    assert load({"REFLEX_ENV": "production"}).environment == "prod"
    assert load({"REFLEX_ENV": "dev", "ALLOWED_ORIGINS": "*"}).allowed_origins == ("*",)


BAD = [
    ({"PORT": "http"}, "PORT is 'http'; expected a whole number"),
    ({"PORT": "70000"}, "PORT is 70000; expected a whole number from 1 to 65535"),
    ({"BACKEND_PORT": "8000"}, "BACKEND_PORT is 8000 but the app serves frontend and backend"),
    ({"FRONTEND_PORT": "3001", "PORT": "3000"}, "FRONTEND_PORT is 3001 but PORT is 3000"),
    ({"REFLEX_ENV": "staging"}, "REFLEX_ENV is 'staging'; expected dev | prod | production"),
    ({"DATABASE_URL": "mysql://u:topsecret@h/d"}, "DATABASE_URL has the unsupported scheme"),
    ({"DATABASE_URL": "postgresql://u:topsecret@/d"}, "DATABASE_URL names no host"),
    ({"DATABASE_URL": "postgresql://u:topsecret@h"}, "DATABASE_URL names no database"),
    ({"DATABASE_URL": "postgresql://u:topsecret@h:99999/d"}, "DATABASE_URL is not a valid URL"),
    ({"REDIS_URL": "http://h:6379"}, "REDIS_URL has the unsupported scheme 'http'"),
    ({"DB_WAIT_TIMEOUT": "soon"}, "DB_WAIT_TIMEOUT is 'soon'; expected a number of seconds"),
    ({"SHUTDOWN_TIMEOUT": "0"}, "SHUTDOWN_TIMEOUT is '0'; expected seconds from 1 to 86400"),
    ({"RUN_MIGRATIONS": "maybe"}, "RUN_MIGRATIONS is 'maybe'; expected true or false"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT is 'xml'; expected text | json"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL is 'loud'; expected debug | info | warning | error"),
    ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS is * in prod"),
    ({"ALLOWED_ORIGINS": "example.com"}, "ALLOWED_ORIGINS contains 'example.com'"),
    ({"WEB_CONCURRENCY": "4"}, "WEB_CONCURRENCY is 4 but REDIS_URL is not set"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY is 0; expected a whole number from 1 to 64"),
]


@pytest.mark.parametrize(("environ", "message"), BAD, ids=[next(iter(e)) for e, _ in BAD])
def test_bad_values_name_the_variable_and_the_expected_form(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ)
    text = str(caught.value)
    assert text.startswith(message)
    assert caught.value.var == next(iter(environ))
    assert "expected" in text
    assert "topsecret" not in text
    assert "\n" not in text


_MUST_NOT_BE_EMPTY = sorted(n for n, spec in contract()["env"].items() if not spec.get("empty_ok"))


@pytest.mark.parametrize("name", _MUST_NOT_BE_EMPTY)
@pytest.mark.parametrize("blank", ["", "  "], ids=["empty", "spaces"])
def test_a_variable_set_but_empty_is_an_error_naming_it(name: str, blank: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({name: blank})
    assert caught.value.var == name
    assert str(caught.value).startswith(f"{name} is set but empty; expected ")
    assert f"or no {name} at all for its default" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_empty_is_a_value_where_the_contract_says_so() -> None:
    # compose.yaml passes these as "" when unset: no Redis, same origin only.
    settings = load({"REDIS_URL": "", "ALLOWED_ORIGINS": ""})
    assert settings.redis_url is None
    assert settings.allowed_origins == ()
    assert {n for n, s in contract()["env"].items() if s.get("empty_ok")} == {
        "REDIS_URL",
        "ALLOWED_ORIGINS",
    }


def test_unset_keeps_the_sqlite_default() -> None:
    assert load({}).database_backend == "sqlite"
    assert load({"DATABASE_URL": "postgresql://u:p@h/d"}).database_backend == "postgresql"


@pytest.mark.parametrize("value", ["inf", "1e9", "86401"])
@pytest.mark.parametrize("var", ["DB_WAIT_TIMEOUT", "SHUTDOWN_TIMEOUT"])
def test_seconds_have_an_upper_bound(var: str, value: str) -> None:
    # Without it DB_WAIT_TIMEOUT=inf is accepted and the database wait never gives up.
    with pytest.raises(ConfigError) as caught:
        load({var: value})
    assert str(caught.value).startswith(f"{var} is {value!r}; expected seconds from ")
    assert str(caught.value).endswith(" to 86400")
    assert getattr(load({var: "86400"}), var.lower()) == 86400
