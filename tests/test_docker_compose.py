"""compose.yaml for real: `docker compose up` on a Docker engine, with tests/compose.docker.yaml
adding only what a test machine lacks (locally built images, a PostgreSQL, a proxy in place of
Coolify's Traefik).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from containers import Compose, Container, docker, name
from docker_services import PROXY_PORT, postgres_image, proxy_image, redis_image

from services import PG_PASSWORD_URL, REPO, add_note, sign_up, wait_until
from test_compose import COMPOSE, parse_duration
from working.runtime.contract import contract

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OVERRIDE = REPO / "tests" / "compose.docker.yaml"
CONTRACT = contract()
# compose.yaml's healthcheck probes every 5 s from the start.
HEALTHY_WITHIN = 120


@pytest.fixture(scope="module")
def images(standin_image):  # type: ignore[no-untyped-def]
    postgres_image()
    redis_image()
    proxy_image()
    return standin_image


@pytest.fixture
def project(images, tmp_path: Path) -> Iterator[Compose]:  # type: ignore[no-untyped-def]
    image, tag = images.tag.split(":")
    env = {
        "IMAGE": image,
        "IMAGE_TAG": tag,
        "DATABASE_URL": f"postgresql://app:{PG_PASSWORD_URL}@postgres:5432/app",
        "SHUTDOWN_TIMEOUT": "10",
    }
    compose = Compose(name("compose").replace("-", ""), [COMPOSE, OVERRIDE], env, tmp_path)
    try:
        yield compose
    finally:
        compose.down()


def _proxy_url(compose: Compose) -> str:
    address = compose.run("port", "proxy", str(PROXY_PORT)).strip().splitlines()[-1]
    return f"http://{address}"


def test_override_adds_only_what_the_machine_lacks() -> None:
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    override = yaml.safe_load(OVERRIDE.read_text())["services"]
    # The app service as compose.yaml has it: this engine (20.10) runs it unchanged.
    assert "app" not in override
    assert set(override) == {"postgres", "redis", "proxy"}
    assert set(override["redis"]) == {"image", "command"}
    assert override["redis"]["command"] == [*base["redis"]["command"], "--protected-mode", "no"]


def test_compose_up_healthy_then_stop_drains_and_down(project: Compose) -> None:
    started = time.monotonic()
    project.run("up", "--detach", "--wait", "--wait-timeout", str(HEALTHY_WITHIN))
    up_s = time.monotonic() - started
    (app,) = project.containers("app")
    assert app.health == "healthy"
    url = _proxy_url(project)
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["database"]["backend"] == "postgresql"
    assert body["git_commit"] == images_revision(app)

    # What compose.yaml asks of the container, as this engine applied it.
    host = app.inspect()["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Memory"] == 512 * 1024 * 1024
    assert (
        app.inspect()["Config"]["User"] == f"{CONTRACT['image']['uid']}:{CONTRACT['image']['gid']}"
    )

    stopped = time.monotonic()
    project.run("stop", "app")
    stop_s = time.monotonic() - stopped
    assert app.exit_code() == 0, app.logs()
    assert stop_s < parse_duration("30s")
    assert "[INFO] SIGTERM: draining" in app.logs()
    print(f"\n[measure] compose up --wait {up_s:.1f}s, stop {stop_s:.1f}s")


def images_revision(app: Container) -> str:
    env = dict(item.split("=", 1) for item in app.inspect()["Config"]["Env"])
    return env["GIT_COMMIT"]


# -- two replicas behind the proxy, with Redis, under a browser ----------------------------------


def _sockets(replicas: list[Container]) -> list[int]:
    """WebSockets each replica accepted (the log masks the tab's token, so a tab's replica is
    the one whose count grew while only that tab was open)."""
    return [r.logs().count("WebSocket /_event") for r in replicas]


@pytest.mark.browser
def test_redis_profile_two_replicas_browser_survives_a_stopped_replica(
    project: Compose, browser
) -> None:  # type: ignore[no-untyped-def]
    project.env.update(COMPOSE_PROFILES="redis", REDIS_URL="redis://redis:6379/0")
    project.run(
        "up", "--detach", "--wait", "--wait-timeout", str(HEALTHY_WITHIN), "--scale", "app=2"
    )
    replicas = project.containers("app")
    assert len(replicas) == 2
    assert all(r.health == "healthy" for r in replicas)
    (redis,) = project.containers("redis")
    assert redis.health == "healthy"
    url = _proxy_url(project)
    body = httpx.get(f"{url}/health", timeout=10).json()
    assert body["redis"]["status"] == "connected", body

    user = f"compose{os.getpid() % 10000}"
    context = browser.new_context()
    page = context.new_page()
    # The tab's replica is the one that accepts a WebSocket while only this tab signs up (on one
    # socket: sign-up ends in client-side navigation). Not a reload to start clean: the page
    # being unloaded may open one more short-lived socket, on either replica.
    before = _sockets(replicas)
    sign_up(page, url, user, "a good password")
    wait_until(lambda: sum(_sockets(replicas)) > sum(before), 10, "the tab's WebSocket logged")
    add_note(page, "before")
    draft = "an unsaved draft"
    page.locator("#note-body").fill(draft)
    page.locator("#note-length").filter(has_text=f"{len(draft)} / ").wait_for()
    token = page.evaluate("window.sessionStorage.getItem('token')")

    counts = [n - m for n, m in zip(_sockets(replicas), before, strict=True)]
    assert sorted(counts) == [0, 1], counts
    victim = replicas[counts.index(1)]
    other, other_before = replicas[counts.index(0)], before[counts.index(0)]
    stopped = time.monotonic()
    victim.stop(timeout=30)
    assert victim.exit_code() == 0, victim.logs()
    assert "[INFO] SIGTERM: draining" in victim.logs()

    wait_until(
        lambda: _sockets([other])[0] > other_before,
        30,
        "the page reconnected to the other replica",
        0.1,
    )
    reconnect_s = time.monotonic() - stopped
    # The page is live on the other replica with the same token and state (kept in Redis).
    page.locator("#note-length").filter(has_text=f"{len(draft)} / ").wait_for()
    assert page.locator("#note-body").input_value() == draft
    assert page.evaluate("window.sessionStorage.getItem('token')") == token
    assert page.locator(".note-body").all_inner_texts() == ["before"]
    add_note(page, "after")
    page.reload()
    page.locator(".note").nth(1).wait_for()
    assert page.locator(".note-body").all_inner_texts() == ["after", "before"]
    context.close()
    print(f"\n[measure] compose: page on the other replica {reconnect_s:.1f}s after docker stop")


# -- a `$` in a value Coolify stores ------------------------------------------------------------

# The password as meant, and as docs/coolify.md says to type it into Coolify's value.
DOLLAR_PASSWORD = "pa$word"
DOLLAR_TYPED = "pa$$word"


@pytest.fixture(scope="module")
def inert_image(docker_engine: None) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """An empty image with a command: enough for `docker compose create`, never started."""
    tag = f"working-test/inert:{os.getpid()}"
    archive = io.BytesIO()
    tarfile.open(fileobj=archive, mode="w").close()
    subprocess.run(
        ["docker", "import", "--change", 'CMD ["/never-run"]', "-", tag],
        input=archive.getvalue(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    yield tag
    docker("rmi", "--force", tag, check=False)


def as_coolify_writes_it(stored: dict[str, str]) -> dict:  # type: ignore[type-arg]
    """compose.yaml as Coolify's applicationParser() (bootstrap/helpers/parsers.php, v4.3.10)
    hands it to `docker compose`: each `${VAR:?}` / `${VAR:-default}` entry of the service's
    environment replaced by the value stored in Coolify, verbatim (`$envVar->value`; its
    escapeDollarSign() is applied to labels only)."""
    document = yaml.safe_load(COMPOSE.read_text())
    environment = document["services"]["app"]["environment"]
    for key, value in stored.items():
        assert str(environment[key]).startswith(f"${{{key}:"), key
        environment[key] = value
    return document


def created_environment(tmp_path: Path, image: str, stored: dict[str, str]) -> tuple[dict, str]:  # type: ignore[type-arg]
    """The app container's environment as Docker created it from that file, and Compose's
    own output (its warnings)."""
    rendered = tmp_path / "docker-compose.yaml"
    rendered.write_text(yaml.safe_dump(as_coolify_writes_it(stored)))
    repository, tag = image.split(":")
    env = {"IMAGE": repository, "IMAGE_TAG": tag}
    compose = Compose(name("dollar").replace("-", ""), [rendered], env, tmp_path)
    try:
        said = compose.run("create", "app")
        label = f"label=com.docker.compose.project={compose.project}"
        [container] = docker("ps", "--all", "--quiet", "--filter", label).stdout.split()
        config = Container(container).inspect()["Config"]
        return dict(item.split("=", 1) for item in config["Env"]), said
    finally:
        compose.down()


def test_a_dollar_typed_twice_in_coolify_reaches_the_app_once(
    tmp_path: Path, inert_image: str
) -> None:
    """docs/coolify.md: type `$` as `$$` in a value Coolify writes into compose.yaml's
    environment; the real Compose here turns it back into one `$`, without a warning."""
    url = "postgresql://app:{}@db.internal:5432/app"
    assert url.format(DOLLAR_TYPED) in (REPO / "docs" / "coolify.md").read_text(), "the docs' form"
    environment, said = created_environment(
        tmp_path, inert_image, {"DATABASE_URL": url.format(DOLLAR_TYPED)}
    )
    assert environment["DATABASE_URL"] == url.format(DOLLAR_PASSWORD)
    assert "variable is not set" not in said


def test_a_dollar_typed_once_is_cut_with_only_a_warning(tmp_path: Path, inert_image: str) -> None:
    """Why the docs insist: Compose reads `$word` as a variable, the password arrives as `pa`,
    and nothing fails; the only trace is Compose's warning in the deploy log."""
    url = "postgresql://app:{}@db.internal:5432/app"
    environment, said = created_environment(
        tmp_path, inert_image, {"DATABASE_URL": url.format(DOLLAR_PASSWORD)}
    )
    assert environment["DATABASE_URL"] == url.format("pa")
    assert 'The \\"word\\" variable is not set. Defaulting to a blank string.' in said
