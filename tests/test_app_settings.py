"""The app's own settings (working/settings.toml): declared once, checked at start with the
runtime's, shown by check-config with secrets masked, and never printed in a log.

The process tests run the runtime in a copy of the app package whose settings.toml declares,
beside the demo's SITE_NOTICE, a required secret and a setting with choices, as a user's app
with an API key would.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services import REPO, Server, base_env, free_port
from working.runtime import app_settings, logs
from working.runtime.contract import contract
from working.runtime.errors import ConfigError
from working.runtime.masking import mask_text
from working.runtime.settings import app_setting, from_environ, load

EXIT = contract()["exit_codes"]
SHOWN = "working/settings.toml"
API_KEY = "sk-live-8f3Kq92ZxTwe"  # URL-safe: it must reach the access log unescaped
USER_APP = """
[env.PAYMENT_API_KEY]
required = true
secret = true
help = "The payment provider's API key"

[env.PAYMENT_MODE]
default = "test"
choices = ["test", "live"]
help = "test or live"
"""


def _parse(text: str) -> tuple[app_settings.AppSetting, ...]:
    return app_settings.parse(text)


USER_SETTINGS = _parse(USER_APP)


# --- the declaration -------------------------------------------------------------------------


def test_the_demo_declares_the_notice_it_shows() -> None:
    (notice,) = app_settings.declared()
    assert notice.name == "SITE_NOTICE"
    assert (notice.default, notice.required, notice.secret) == ("", False, False)
    assert load({}).app_env == {"SITE_NOTICE": ""}
    assert load({"SITE_NOTICE": " Down on Sunday "}).app_env["SITE_NOTICE"] == "Down on Sunday"
    assert "SITE_NOTICE" not in load({}).masked(), "the runtime's own section stays its own"


BAD_DECLARATIONS = [
    ("[env.PORT]\nhelp = 'x'", "working/settings.toml: [env.PORT] is the runtime's setting"),
    ("[env.api_key]\nhelp = 'x'", "working/settings.toml: [env.api_key] is not a variable name"),
    (
        "[env.KEY]\nhelp = 'x'\ndefualt = 'a'",
        "working/settings.toml: [env.KEY] has the unknown key",
    ),
    ("[env.KEY]\nhelp = 'x'\nsecret = 'yes'", "working/settings.toml: [env.KEY] secret is 'yes'"),
    ("[env.KEY]\nhelp = 'x'\ndefault = 3", "working/settings.toml: [env.KEY] default is 3"),
    ("[env.KEY]\nhelp = 'x'\nchoices = 'a'", "working/settings.toml: [env.KEY] choices is 'a'"),
    ("[env.KEY]\ndefault = 'a'", "working/settings.toml: [env.KEY] has no help"),
    (
        "[env.KEY]\nhelp = 'x'\nrequired = true\ndefault = 'a'",
        "working/settings.toml: [env.KEY] is required and has a default",
    ),
    (
        "[env.KEY]\nhelp = 'x'\nsecret = true\ndefault = 'a'",
        "working/settings.toml: [env.KEY] is secret and has a default",
    ),
    (
        "[env.KEY]\nhelp = 'x'\ndefault = 'c'\nchoices = ['a', 'b']",
        "working/settings.toml: [env.KEY] default is 'c'; expected a | b",
    ),
    ("[env.KEY]\nhelp = 'x'\ndefault = 'a}b'", "working/settings.toml: [env.KEY] default is"),
    ("[env.KEY]\nhelp = 'x'\ndefault = 'a: b'", "working/settings.toml: [env.KEY] default is"),
    ("[settings.KEY]\nhelp = 'x'", "working/settings.toml has the key 'settings'"),
    ("[env.KEY\nhelp = 'x'", "working/settings.toml is not valid TOML ("),
]


@pytest.mark.parametrize(("text", "message"), BAD_DECLARATIONS)
def test_a_bad_declaration_is_one_line_naming_the_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    assert str(caught.value).startswith(message)
    assert "; expected " in str(caught.value)
    assert "\n" not in str(caught.value)


# --- the values ------------------------------------------------------------------------------


def test_values_take_defaults_and_choices() -> None:
    assert app_settings.load({"PAYMENT_API_KEY": "k1"}, USER_SETTINGS) == {
        "PAYMENT_API_KEY": "k1",
        "PAYMENT_MODE": "test",
    }
    assert (
        app_settings.load({"PAYMENT_API_KEY": "k1", "PAYMENT_MODE": "live"}, USER_SETTINGS)[
            "PAYMENT_MODE"
        ]
        == "live"
    )
    (flag,) = _parse("[env.FLAG]\nhelp = 'x'\ndefault = 'on'\nempty_ok = true")
    assert app_settings.load({"FLAG": ""}, (flag,)) == {"FLAG": ""}
    assert app_settings.load({}, (flag,)) == {"FLAG": "on"}


BAD_VALUES = [
    (
        {},
        "PAYMENT_API_KEY is not set; expected a value (The payment provider's API key); "
        f"required, declared in {SHOWN}",
    ),
    (
        {"PAYMENT_API_KEY": "  "},
        "PAYMENT_API_KEY is set but empty; expected a value (The payment provider's API key), "
        f"required; declared in {SHOWN}",
    ),
    (
        {"PAYMENT_API_KEY": "k1", "PAYMENT_MODE": "prod"},
        f"PAYMENT_MODE is 'prod'; expected test | live (declared in {SHOWN})",
    ),
    (
        {"PAYMENT_API_KEY": "k1", "PAYMENT_MODE": ""},
        "PAYMENT_MODE is set but empty; expected a value (test or live), or no PAYMENT_MODE at "
        f"all for its default (test); declared in {SHOWN}",
    ),
]


@pytest.mark.parametrize(("environ", "message"), BAD_VALUES)
def test_a_bad_value_is_the_runtimes_one_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        app_settings.load(environ, USER_SETTINGS)
    assert str(caught.value) == message
    assert caught.value.exit_code == EXIT["config"]


def test_a_secret_is_never_echoed_in_an_error() -> None:
    (token,) = _parse("[env.TOKEN]\nhelp = 'x'\nsecret = true\nchoices = ['a1b2c3d4']")
    with pytest.raises(ConfigError) as caught:
        app_settings.load({"TOKEN": "wrong-secret-value"}, (token,))
    assert str(caught.value).startswith("TOKEN is not one of its choices; expected ")
    assert "wrong-secret-value" not in str(caught.value)


def test_a_secret_is_masked_in_check_config_and_in_every_log_line() -> None:
    values = app_settings.load({"PAYMENT_API_KEY": API_KEY}, USER_SETTINGS)
    assert app_settings.masked(USER_SETTINGS, values) == {
        "PAYMENT_API_KEY": "***",
        "PAYMENT_MODE": "test",
    }
    # Whatever line carries it (the app's own, a library's, an access line): masked.
    line = logs.render("text", "ERROR", "app", f"payment failed: GET /charge?k={API_KEY}")
    assert API_KEY not in line
    assert "/charge?k=***" in line
    assert mask_text(f"key {API_KEY}") == "key ***"


def test_the_app_reads_its_settings_and_only_those_it_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SITE_NOTICE", "hi")
    from_environ.cache_clear()
    try:
        assert app_setting("SITE_NOTICE") == "hi"
        with pytest.raises(ConfigError) as caught:
            app_setting("SITE_NOTCE")
    finally:
        from_environ.cache_clear()
    expected = f"an [env.SITE_NOTCE] table in {SHOWN}"
    assert str(caught.value) == f"SITE_NOTCE is not declared; expected {expected}"


# --- real processes --------------------------------------------------------------------------


def user_app(root: Path, declarations: str = USER_APP) -> Path:
    """The app package and rxconfig.py, copied, its settings.toml extended by `declarations`."""
    tree = root / "app"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "working", tree / "working", ignore=skip)
    shutil.copyfile(REPO / "rxconfig.py", tree / "rxconfig.py")
    declared = tree / "working" / "settings.toml"
    declared.write_text(declared.read_text() + declarations)
    return tree


def run(tree: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", *args],
        cwd=tree,
        env=base_env(PYTHONPATH=str(tree), DATA_DIR=str(tree / "data"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", ["serve", "migrate", "check-config"])
def test_a_required_app_setting_unset_stops_with_one_line_and_exit_2(
    command: str, tmp_path: Path
) -> None:
    tree = user_app(tmp_path)
    # Not an export: a start that got past its settings stops there, instead of building one.
    (tmp_path / "not-an-export").mkdir()
    (tmp_path / "not-an-export" / "README").write_text("")
    for environ in ({}, {"PAYMENT_API_KEY": ""}):  # unset, and Coolify's blank
        result = run(tree, command, FRONTEND_DIR=str(tmp_path / "not-an-export"), **environ)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == EXIT["config"], f"exit {result.returncode}: {output}"
        assert output.count("\n") == 0, output
        assert output.startswith("[ERROR] PAYMENT_API_KEY is "), output
        assert output.endswith(f"declared in {SHOWN}") or f"; declared in {SHOWN}" in output
        assert "Traceback" not in output
        assert not (tree / "data").exists(), "it went on to the database"


def test_a_bad_declaration_stops_with_one_line_and_exit_2(tmp_path: Path) -> None:
    tree = user_app(tmp_path, '\n[env.DATABASE_URL]\nhelp = "mine"\n')
    result = run(tree, "serve")
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == EXIT["config"], output
    assert output == (
        f"[ERROR] {SHOWN}: [env.DATABASE_URL] is the runtime's setting; "
        "expected another name (README, Settings)"
    )


def test_check_config_shows_the_apps_settings_secrets_masked(tmp_path: Path) -> None:
    tree = user_app(tmp_path)
    result = run(tree, "check-config", PAYMENT_API_KEY=API_KEY, PAYMENT_MODE="live")
    assert result.returncode == 0, result.stderr
    runtime, app = result.stdout.split(f"# the app's own settings ({SHOWN})\n")
    assert "PAYMENT" not in runtime
    assert app.splitlines() == ["SITE_NOTICE=", "PAYMENT_API_KEY=***", "PAYMENT_MODE=live"]
    assert API_KEY not in result.stdout + result.stderr


def test_compose_env_prints_the_lines_to_paste(tmp_path: Path) -> None:
    tree = user_app(tmp_path)
    # What the app declares: this machine's environment (the required key unset) is not asked.
    result = run(tree, "check-config", "--compose-env")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-4:] == [
        "      # The payment provider's API key",
        "      PAYMENT_API_KEY: ${PAYMENT_API_KEY:?}",
        "      # test or live",
        "      PAYMENT_MODE: ${PAYMENT_MODE:-test}",
    ]
    broken = user_app(tmp_path / "broken", '\n[env.KEY]\nhelp = "x"\nsecret = "no"\n')
    result = run(broken, "check-config", "--compose-env")
    assert result.returncode == EXIT["config"]
    assert (result.stdout + result.stderr).strip() == (
        f"[ERROR] {SHOWN}: [env.KEY] secret is 'no'; expected true or false"
    )


# npm ci from the registry (or its cache) for the build: not in the Nix sandbox's selection.
@pytest.mark.slow
@pytest.mark.network
def test_a_build_needs_no_deployment_value(tmp_path: Path) -> None:
    """Values of the deployment (an API key) are absent from a build, the Nix sandbox's or
    CI's: the app compiles with a required setting unset, which then reads as empty."""
    tree = user_app(tmp_path)
    values = app_settings.load({}, USER_SETTINGS, deployed=False)
    assert values == {"PAYMENT_API_KEY": "", "PAYMENT_MODE": "test"}
    with pytest.raises(ConfigError, match="PAYMENT_MODE is 'x'"):
        app_settings.load({"PAYMENT_MODE": "x"}, USER_SETTINGS, deployed=False)
    # The real build: the same command the image's build runs, offline from the demo's lock.
    out = tmp_path / "export"
    lock = REPO / "nix" / "frontend"
    result = run(tree, "build-frontend", "--out", str(out), "--lock", str(lock))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "index.html").is_file()


@pytest.mark.browser
@pytest.mark.slow
def test_serve_shows_the_notice_and_never_logs_the_secret(  # type: ignore[no-untyped-def]
    frontend_export: Path, browser, tmp_path: Path
) -> None:
    tree = user_app(tmp_path)
    port = free_port()
    notice = "Planned maintenance on Sunday, 02:00 UTC"
    env = base_env(
        PYTHONPATH=str(tree),
        PORT=str(port),
        DATA_DIR=str(tmp_path / "data"),
        FRONTEND_DIR=str(frontend_export),
        LOG_LEVEL="debug",
        SITE_NOTICE=notice,
        PAYMENT_API_KEY=API_KEY,
    )
    server = Server(env, port, cwd=tree).start()
    try:
        server.wait_healthy()
        page = browser.new_page()
        page.goto(f"{server.url}/")
        # Computed by the serving process from its environment: the export holds no notice.
        page.locator("#site-notice").filter(has_text=notice).wait_for()
        page.close()
        # A client that puts the key in a URL: the access line is written, the key is not.
        assert httpx.get(f"{server.url}/ping?ref={API_KEY}", timeout=10).status_code == 200
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output
    finally:
        server.stop()
    assert "/ping?ref=*** " in server.output, server.output
    assert API_KEY not in server.output
    assert notice not in (frontend_export / "index.html").read_text()


@pytest.mark.slow
def test_without_the_notice_the_page_shows_none(serve, browser) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    server.wait_healthy()
    page = browser.new_page()
    page.goto(f"{server.url}/")
    page.get_by_text("Notes that stay yours").wait_for()
    assert page.locator("#site-notice").count() == 0
    page.close()
