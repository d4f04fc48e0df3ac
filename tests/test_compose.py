"""compose.yaml and compose.dev.yaml: valid Compose, and in agreement with the runtime contract.

The contract (working/runtime/contract.toml) is read with tomllib, the Compose files with
PyYAML, the Compose Specification schema from ../shared/schemas/compose-spec.json. Compose
validates a file after interpolation, so the tests do the same with a realistic environment.

`load_app_service(environ)` is for other tests: it returns the `app` service as Compose would
run it (variables interpolated from `environ`), e.g. to start the service without Docker.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from working.runtime import app_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE = REPO_ROOT / "compose.yaml"
COMPOSE_DEV = REPO_ROOT / "compose.dev.yaml"
CONTRACT = REPO_ROOT / "working" / "runtime" / "contract.toml"
SCHEMA = Path(REPO_ROOT).parent / "shared/schemas/compose-spec.json"

# What a deployment sets: the variables compose.yaml requires plus the usual optional ones.
DEPLOY_ENV = {
    "IMAGE": "ghcr.io/example/working",
    "IMAGE_TAG": "0123456789abcdef0123456789abcdef01234567",
    "DATABASE_URL": "postgresql://working:secret@db.internal:5432/working",
}
# Variables compose.yaml may reference that are about the deployment, not the app.
DEPLOY_ONLY_VARS = {"IMAGE", "IMAGE_TAG", "PULL_POLICY", "APP_HOST_PORT"}


# --- Compose interpolation ------------------------------------------------------------------


class InterpolationError(ValueError):
    """A required variable is missing, as `docker compose` would report it."""


_VAR = re.compile(
    r"""
    \$(?:
        (?P<escaped>\$)
      | (?P<named>[_a-zA-Z][_a-zA-Z0-9]*)
      | \{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)
           (?:(?P<op>:?[-?+])(?P<arg>[^}]*))?
        \}
    )
    """,
    re.VERBOSE,
)


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Interpolate one string per the Compose Specification.

    Supports `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`,
    `${VAR?msg}`, `${VAR:+alt}` and `${VAR+alt}` (without nesting, which these files don't use).
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("named") or match.group("braced")
        op, arg = match.group("op"), match.group("arg") or ""
        value = environ.get(name)
        is_set = value is not None
        is_nonempty = bool(value)
        match op:
            case None:
                return value or ""
            case ":-":
                return value if is_nonempty else arg
            case "-":
                return value if is_set else arg
            case ":?" | "?":
                if (op == ":?" and not is_nonempty) or (op == "?" and not is_set):
                    why = arg or ("must be set" if op == "?" else "must be set and non-empty")
                    raise InterpolationError(f"required variable {name} is missing a value: {why}")
                return value
            case ":+":
                return arg if is_nonempty else ""
            case "+":
                return arg if is_set else ""
        raise AssertionError(op)  # pragma: no cover

    return _VAR.sub(replace, text)


def interpolate_tree(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, environ) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, environ) for value in node]
    return node


def merge(base: Any, override: Any) -> Any:
    """Merge an override file into a base file the way Compose does for what these files use:
    mappings merge key by key, sequences of ports/expose/volumes append, the rest is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if key in merged:
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return copy.deepcopy(override)


def load_compose(
    environ: Mapping[str, str], files: tuple[Path, ...] = (COMPOSE,), *, raw: bool = False
) -> dict[str, Any]:
    """Load Compose files merged in order, then interpolate from `environ` (Compose 2.29+ order)."""
    document: dict[str, Any] = {}
    for path in files:
        document = merge(document, yaml.safe_load(path.read_text()))
    return document if raw else interpolate_tree(document, environ)


def load_app_service(
    environ: Mapping[str, str] | None = None, files: tuple[Path, ...] = (COMPOSE,)
) -> dict[str, Any]:
    """The `app` service as Compose runs it, interpolated from `environ` (default: DEPLOY_ENV).

    `environment` is always returned as a dict of strings, the healthcheck test as a list.
    """
    service = load_compose(DEPLOY_ENV if environ is None else environ, files)["services"]["app"]
    service["environment"] = _env_dict(service.get("environment", {}))
    return service


def _env_dict(environment: dict[str, Any] | list[str]) -> dict[str, str]:
    if isinstance(environment, list):
        pairs = (item.split("=", 1) for item in environment)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def parse_duration(text: str) -> float:
    """Compose durations: '30s', '1m30s', '500ms', '1h'."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Compose duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return tomllib.loads(CONTRACT.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA.is_file():
        # The schema lives in ../shared, beside the repository: present for a developer and for
        # .ci/run (which must not skip), absent inside the Nix build sandbox.
        message = f"Compose schema not found at {SCHEMA}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def app() -> dict[str, Any]:
    return load_app_service()


@pytest.fixture(scope="module")
def raw_app() -> dict[str, Any]:
    return load_compose({}, raw=True)["services"]["app"]


def _errors(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# --- schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "environ"),
    [
        ((COMPOSE,), DEPLOY_ENV),
        ((COMPOSE,), {**DEPLOY_ENV, "PULL_POLICY": "always", "IMAGE_TAG": "latest"}),
        ((COMPOSE_DEV,), {}),
        ((COMPOSE, COMPOSE_DEV), {"IMAGE": "working", "IMAGE_TAG": "dev"}),
    ],
    ids=["compose", "compose-moving-tag", "compose.dev-alone", "compose+compose.dev"],
)
def test_valid_against_compose_spec(validator, files, environ):
    document = load_compose(environ, files)
    assert _errors(validator, document) == []


def test_schema_rejects_a_broken_file(validator):
    """The validation is real: a typo'd key and a wrong type are both reported."""
    document = load_compose(DEPLOY_ENV)
    document["services"]["app"]["helthcheck"] = {}
    document["services"]["app"]["expose"] = "3000"
    errors = _errors(validator, document)
    assert any("helthcheck" in error for error in errors)
    assert any(error.startswith("services/app/expose") for error in errors)


# --- required variables ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["IMAGE", "IMAGE_TAG", "DATABASE_URL"])
def test_required_variables_block_the_deploy(name):
    for environ in ({k: v for k, v in DEPLOY_ENV.items() if k != name}, {**DEPLOY_ENV, name: ""}):
        with pytest.raises(InterpolationError, match=name):
            load_compose(environ)


def test_required_variables_are_bare_for_coolify():
    """Coolify reads the text after `:?` as a prefilled default: keep it empty."""
    text = json.dumps(load_compose({}, (COMPOSE, COMPOSE_DEV), raw=True))
    assert re.findall(r"\$\{[A-Z_]+:\?[^}]+\}", text) == []


def test_dev_stack_needs_no_database_url():
    app = load_app_service({"IMAGE": "working", "IMAGE_TAG": "dev"}, (COMPOSE, COMPOSE_DEV))
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert app["healthcheck"]["test"] == load_app_service()["healthcheck"]["test"]


# --- the contract ----------------------------------------------------------------------------


def test_image_is_the_explicit_tag(app):
    assert app["image"] == f"{DEPLOY_ENV['IMAGE']}:{DEPLOY_ENV['IMAGE_TAG']}"
    assert "build" not in app, "Coolify never builds: the image comes from the registry"


def test_healthcheck_is_the_images_own_subcommand(app, contract):
    healthcheck = app["healthcheck"]
    expected = [
        "CMD",
        contract["entrypoint"]["console_script"],
        *contract["healthcheck"]["command"],
    ]
    assert healthcheck["test"] == expected
    assert set(contract["healthcheck"]["command"]) <= set(contract["entrypoint"]["commands"])
    hc = contract["healthcheck"]
    assert parse_duration(healthcheck["interval"]) == hc["interval_s"]
    assert parse_duration(healthcheck["timeout"]) == hc["timeout_s"]
    assert int(healthcheck["retries"]) == hc["retries"]
    assert parse_duration(healthcheck["start_period"]) == hc["start_period_s"]
    # The subcommand gives up before Docker kills it, so a failure is reported, not a timeout.
    assert hc["request_timeout_s"] < parse_duration(healthcheck["timeout"])
    # Compose refuses start_interval below Docker Engine 25; Coolify accepts Engine 24.
    assert "start_interval" not in healthcheck


def test_port_is_exposed_not_published(app, contract):
    port = contract["http"]["port"]
    assert [str(p) for p in app["expose"]] == [str(port)]
    assert "ports" not in app, "Coolify's proxy reaches the container over its network"
    assert "container_name" not in app, "Coolify names containers; a fixed name breaks redeploys"
    assert app["environment"]["PORT"] == str(port)


def test_shutdown_fits_in_the_grace_period(app, contract):
    shutdown = contract["shutdown"]
    assert app["stop_signal"] == shutdown["stop_signal"]
    grace = parse_duration(app["stop_grace_period"])
    assert grace == shutdown["grace_period_s"]
    timeout = float(app["environment"]["SHUTDOWN_TIMEOUT"])
    assert timeout == float(contract["env"]["SHUTDOWN_TIMEOUT"]["default"]) == shutdown["timeout_s"]
    # Room for the last in-flight request and disposing the pool after the drain deadline.
    assert grace >= timeout + 5


def test_data_volume_is_the_contract_data_dir(app, contract):
    data_dir = contract["image"]["data_dir"]
    targets = {}
    for volume in app["volumes"]:
        source, target = (
            volume.split(":")[:2]
            if isinstance(volume, str)
            else (volume["source"], volume["target"])
        )
        targets[target] = source
    assert data_dir in targets
    assert targets[data_dir] in load_compose(DEPLOY_ENV)["volumes"], "a named volume, not a path"
    assert app["environment"]["DATA_DIR"] == data_dir


def test_read_only_root_with_writable_tmp(app, contract):
    assert app["read_only"] is True
    tmpfs = [entry.split(":")[0] for entry in app["tmpfs"]]
    assert contract["image"]["tmp_dir"] in tmpfs
    # Every writable place is the data volume or a tmpfs; nothing else is mounted writable.
    assert {v.split(":")[1] for v in app["volumes"]} == {contract["image"]["data_dir"]}


def _app_declared() -> dict[str, app_settings.AppSetting]:
    """The app's own settings, as it declares them (working/settings.toml)."""
    return {setting.name: setting for setting in app_settings.declared()}


def test_environment_names_are_in_the_contract(raw_app, contract):
    known = set(contract["env"]) | set(_app_declared())
    environment = raw_app["environment"]
    assert set(environment) <= known, f"declared nowhere: {set(environment) - known}"
    referenced = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", json.dumps(load_compose({}, raw=True))))
    assert referenced <= known | DEPLOY_ONLY_VARS, referenced - known - DEPLOY_ONLY_VARS


def test_every_deploy_setting_of_the_contract_is_in_the_file(raw_app, contract):
    """Coolify offers only the variables named under `environment:`: a setting missing there
    cannot be tuned in its UI (contract `compose = false`: set by the image, or not a setting).
    Exactly those of the runtime and every one the app declares, nothing else."""
    settings = {name for name, spec in contract["env"].items() if spec.get("compose", True)}
    assert set(raw_app["environment"]) == settings | set(_app_declared())


def test_defaults_are_the_contract_defaults(raw_app, contract):
    """`NAME: ${NAME:-default}` must default to what the app itself would use."""
    for name, value in raw_app["environment"].items():
        match = re.fullmatch(r"\$\{(?P<var>[A-Z_0-9]+)(?::-(?P<default>[^}]*))?(?::\?)?\}", value)
        if match is None:
            continue  # a fixed value, checked elsewhere
        assert match["var"] == name, f"{name} is fed from another variable ({match['var']})"
        if match["default"] is not None and name in contract["env"]:
            spec = contract["env"][name]
            assert match["default"] == spec.get("compose_default", spec["default"]), name


def test_app_settings_are_offered_as_declared(raw_app):
    """Each of the app's settings reaches it from compose.yaml the way the file declares it:
    unset, it gets its default; a required one unset or blank stops the deploy at Compose."""
    for name, setting in _app_declared().items():
        value = raw_app["environment"][name]
        assert value == setting.compose_value(), name
        if setting.required:
            for environ in ({}, {name: ""}):
                with pytest.raises(InterpolationError, match=name):
                    interpolate(value, environ)
            continue
        passed = {name: interpolate(value, {})}
        assert app_settings.load(passed, (setting,))[name] == setting.default, name
        if setting.empty_ok:
            assert interpolate(value, {name: ""}) == ""


def test_app_settings_block_is_what_check_config_prints():
    """The user pastes `working check-config --compose-env` into compose.yaml: what it prints
    is what the file holds, comments included."""
    block = app_settings.compose_environment(app_settings.declared())
    assert block + "\n" in COMPOSE.read_text()


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        ("required = true", "${KEY:?}"),
        ('default = "10"', "${KEY:-10}"),
        ('default = ""', "${KEY:-}"),
        ('default = "on"\nempty_ok = true', "${KEY-on}"),
        ("secret = true", "${KEY:-}"),
    ],
)
def test_compose_forms_follow_the_declaration(declaration, expected):
    """The forms compose.yaml uses for the runtime's own: `:?` bare for required, `:-` where a
    blank means "the default", `-` where a blank is a value of its own."""
    (setting,) = app_settings.parse(f'[env.KEY]\nhelp = "h"\n{declaration}\n')
    assert setting.compose_value() == expected
    if setting.required:
        with pytest.raises(InterpolationError, match="KEY"):
            interpolate(expected, {"KEY": ""})
    else:
        blank = interpolate(expected, {"KEY": ""})
        assert app_settings.load({"KEY": blank}, (setting,))["KEY"] == (
            "" if setting.empty_ok else setting.default
        )


def test_secrets_are_never_written_in_the_file(raw_app, contract):
    secrets = {name for name, spec in contract["env"].items() if spec.get("secret")}
    secrets |= {name for name, setting in _app_declared().items() if setting.secret}
    for name in secrets & set(raw_app["environment"]):
        assert raw_app["environment"][name].startswith("${"), f"{name} must come from a variable"


def test_database_url_is_required(raw_app):
    assert raw_app["environment"]["DATABASE_URL"] == "${DATABASE_URL:?}"


def test_pull_policy_supports_both_tag_styles():
    assert load_app_service()["pull_policy"] == "missing"
    moving = load_app_service({**DEPLOY_ENV, "IMAGE_TAG": "latest", "PULL_POLICY": "always"})
    assert moving["pull_policy"] == "always"


def test_redis_is_optional_and_healthchecked():
    document = load_compose(DEPLOY_ENV)
    redis = document["services"]["redis"]
    assert redis["profiles"] == ["redis"]
    assert redis["healthcheck"]["test"][0] == "CMD"
    assert "6379" in [str(port) for port in redis["expose"]]
    assert load_app_service()["environment"]["REDIS_URL"] == ""
    wired = load_app_service({**DEPLOY_ENV, "REDIS_URL": "redis://redis:6379/0"})
    assert wired["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_resource_limits_leave_room(app):
    limits = app["deploy"]["resources"]["limits"]
    memory = limits["memory"]
    assert re.fullmatch(r"\d+[MG]", memory)
    megabytes = int(memory[:-1]) * (1024 if memory.endswith("G") else 1)
    assert megabytes >= 2 * 250, "twice the measured idle RSS (bench/)"


# --- the interpolation helper itself ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("$A-$B", {"A": "x"}, "x-"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:+alt}", {"A": "x"}, "alt"),
        ("${A:+alt}", {"A": ""}, ""),
        ("${A+alt}", {"A": ""}, "alt"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("${A:?}", {"A": "x"}, "x"),
        ("${A?}", {"A": ""}, ""),
    ],
)
def test_interpolate(text, environ, expected):
    assert interpolate(text, environ) == expected


@pytest.mark.parametrize(("text", "environ"), [("${A:?}", {"A": ""}), ("${A?boom}", {})])
def test_interpolate_required(text, environ):
    with pytest.raises(InterpolationError, match="A"):
        interpolate(text, environ)


def test_parse_duration():
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="duration"):
        parse_duration("30")
