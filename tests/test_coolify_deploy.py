"""The deploy script against a local HTTP server that imitates Coolify's API.

The imitation follows Coolify's own controllers (coollabsio/coolify v4.3.10,
app/Http/Controllers/Api): POST /api/v1/deploy answers {"deployments": [{message, resource_uuid,
deployment_uuid}]} (no deployment_uuid for a Service, or for an application the token's user may
not deploy), GET on it answers 405 with `Allow: POST`, a bad token 401 "Unauthenticated.", a full
deployment queue 429 with Retry-After, and GET /api/v1/deployments/<uuid> reports `status` as
queued, in_progress, finished, failed or cancelled-by-user. `force` is read as Coolify before
v4.2.0 reads it (any non-empty value but "0" is true). "Already queued" follows
queue_application_deployment: only a deployment of pull request 0 whose commit is still `HEAD`
(queued, or running before check_git_if_build_needed resolved it) is matched. The script runs as
a real subprocess, as in CI, and no run may print the token.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / ".github" / "scripts" / "coolify_deploy.py"

TOKEN = "3|tok-9f8e7d6c5b4a3210-SECRET"
APP_UUID = "vgsco4o0k8w4wk0c"
DEPLOYMENT_UUID = "dep-q8sk0w4c4"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The sha of the branch a running deployment resolved `HEAD` to.
BRANCH_TIP = "aaaabbbbccccddddeeeeffff0000111122223333"


def _load_module():
    spec = importlib.util.spec_from_file_location("coolify_deploy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["coolify_deploy"] = module
    spec.loader.exec_module(module)
    return module


deploy = _load_module()


# --- the imitation of Coolify ----------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    """One entry of Coolify's deployment queue. It reads IMAGE_TAG when it starts (goes
    in_progress), as ApplicationDeploymentJob parses the compose file then; when it finishes
    that tag is live, when it fails nothing is (Coolify stopped the old container first)."""

    uuid: str
    # Successive statuses, one per poll; the last one repeats.
    statuses: list[str]
    tag: str | None = None
    pull_request_id: int = 0
    # `HEAD` until the job resolves it to the branch's sha, early in a running deployment.
    commit: str = "HEAD"

    @property
    def status(self) -> str:
        return self.statuses[0]

    def advance(self, scenario: Scenario) -> str:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status != "queued":
            self.commit = BRANCH_TIP
            if self.tag is None:
                self.tag = scenario.envs.get("IMAGE_TAG")
        if status == "finished":
            scenario.live = self.tag
        elif status in ("failed", "cancelled-by-user") and self.tag not in scenario.unpullable:
            # The old container was stopped before `up -d` failed; a failed pull (the custom
            # build command, before the stop) leaves it serving.
            scenario.live = None
        return status


@dataclass
class Scenario:
    # Answers to POST /deploy before the normal one (e.g. 429s, 5xx).
    deploy_replies: list[Reply] = field(default_factory=list)
    # Successive statuses of the first deployment; the last one repeats.
    statuses: list[str] = field(default_factory=lambda: ["queued", "in_progress", "finished"])
    # Statuses of each later deployment (a rollback's), in order; then they simply finish.
    later_statuses: list[list[str]] = field(default_factory=list)
    # Deployments already in the queue before this run (for "already queued").
    queue: list[Deployment] = field(default_factory=list)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    # The tag whose container serves: what /health reports when `health` is None.
    live: str | None = "old"
    # Tags whose container starts but never turns healthy.
    unhealthy: set[str] = field(default_factory=set)
    # Tags whose pull fails in the custom build command: the deployment fails, the old stays.
    unpullable: set[str] = field(default_factory=set)
    # Whether the token's user may deploy the application (DeployController::deploy_resource).
    may_deploy: bool = True
    # Each trigger's force_rebuild, as Coolify before v4.2.0 read the query.
    forced: list[bool] = field(default_factory=list)
    # Whether the token may read values (Coolify's read:sensitive).
    sensitive: bool = True
    # A Service resource: the deploy answer has no deployment_uuid.
    service: bool = False
    # Environment variables the resource has (PATCH updates, POST creates).
    envs: dict[str, str] = field(default_factory=lambda: {"IMAGE_TAG": "old"})
    # Successive /health answers; the last one repeats. None: the live tag's commit.
    health: list[Reply] | None = field(
        default_factory=lambda: [Reply(200, {"status": "ok", "git_commit": COMMIT})]
    )
    # Echo the Authorization header back in errors, as a careless proxy might.
    echo_auth: bool = False
    requests: list[tuple[str, str, dict[str, str], str | None]] = field(default_factory=list)
    polls: int = 0


class FakeCoolify(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, method: str) -> None:
        scenario = self.server.scenario
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization")
        scenario.requests.append((method, url.path, query, auth))
        self._reply(self._route(scenario, method, url.path, query, body, auth))

    def _route(self, scenario, method, path, query, body, auth) -> Reply:
        if path == "/health":
            if auth is not None:
                return Reply(500, {"message": "the token was sent to the app"})
            if scenario.health is None:
                if scenario.live is None:
                    return Reply(502, None)  # Traefik: no container behind the route
                if scenario.live in scenario.unhealthy:
                    return Reply(503, {"status": "degraded", "git_commit": scenario.live})
                return Reply(200, {"status": "healthy", "git_commit": scenario.live})
            return scenario.health.pop(0) if len(scenario.health) > 1 else scenario.health[0]
        if not path.startswith("/api/v1/"):
            return Reply(404, {"message": "Not found."})
        if auth != f"Bearer {TOKEN}":
            message = "Unauthenticated." + (f" ({auth})" if scenario.echo_auth else "")
            return Reply(401, {"message": message})
        route = path.removeprefix("/api/v1")
        if route == "/deploy":
            if method == "GET":
                return Reply(
                    405,
                    {"message": "This endpoint has changed to a POST request."},
                    {"Allow": "POST"},
                )
            if scenario.deploy_replies:
                return scenario.deploy_replies.pop(0)
            if query.get("uuid") != APP_UUID:
                return Reply(404, {"message": "No resources found."})
            # `$request->input('force') ?? false` passed on as a bool: PHP's string to bool.
            force = query.get("force") not in (None, "", "0")
            scenario.forced.append(force)
            if not scenario.may_deploy and not scenario.service:
                # by_uuids leaves deployment_uuid out when deploy_resource returns null.
                entry = {
                    "message": "Unauthorized to deploy this application.",
                    "resource_uuid": APP_UUID,
                }
                return Reply(200, {"deployments": [entry]})
            if scenario.service:
                entry = {
                    "message": "Service working started. It could take a while, be patient.",
                    "resource_uuid": APP_UUID,
                }
                return Reply(200, {"deployments": [entry]})
            matched = [
                d
                for d in scenario.queue
                if d.status in ("queued", "in_progress")
                and d.pull_request_id == 0
                and d.commit == "HEAD"
            ]
            if matched and not force:
                # DeployController::deploy_resource: a fresh uuid that names no deployment.
                entry = {
                    "message": "Deployment already queued for this commit.",
                    "resource_uuid": APP_UUID,
                    "deployment_uuid": f"never-created-{len(scenario.requests)}",
                }
                return Reply(200, {"deployments": [entry]})
            return Reply(200, {"deployments": [self._queue_deployment(scenario)]})
        if route == f"/deployments/applications/{APP_UUID}" and method == "GET":
            newest_first = list(reversed(scenario.queue))
            return Reply(
                200,
                {
                    "count": len(newest_first),
                    "deployments": [
                        {
                            "deployment_uuid": d.uuid,
                            "status": d.status,
                            "application_id": "1",
                            "commit": d.commit,
                            "pull_request_id": d.pull_request_id,
                        }
                        for d in newest_first[: int(query.get("take", 10))]
                    ],
                },
            )
        if route.startswith("/deployments/") and method == "GET":
            found = scenario.deployments.get(route.removeprefix("/deployments/"))
            if found is None:
                return Reply(404, {"message": "Deployment not found."})
            scenario.polls += 1
            body = {
                "deployment_uuid": found.uuid,
                "status": found.advance(scenario),
                "application_id": "1",
                "commit": "HEAD",
            }
            return Reply(200, body)
        if route == f"/applications/{APP_UUID}/envs" and method == "GET":
            listed = []
            for key, value in scenario.envs.items():
                entry = {"uuid": f"env-{key}", "key": key, "is_preview": False}
                if scenario.sensitive:
                    entry |= {"value": value, "real_value": value}
                listed.append(entry)
            return Reply(200, listed)
        if route == f"/applications/{APP_UUID}/envs":
            key, value = body["key"], body["value"]
            if method == "PATCH":
                if key not in scenario.envs:
                    return Reply(404, {"message": "Environment variable not found."})
                scenario.envs[key] = value
                return Reply(201, {"key": key, "value": value})
            if method == "POST":
                scenario.envs[key] = value
                return Reply(201, {"uuid": "env1"})
        return Reply(404, {"message": "Not found."})

    def _queue_deployment(self, scenario: Scenario) -> dict[str, str]:
        first = not scenario.deployments
        uuid = DEPLOYMENT_UUID if first else f"{DEPLOYMENT_UUID}-{len(scenario.deployments)}"
        if first:
            statuses = scenario.statuses
        elif scenario.later_statuses:
            statuses = scenario.later_statuses.pop(0)
        else:
            statuses = ["queued", "in_progress", "finished"]
        scenario.deployments[uuid] = Deployment(uuid, statuses)
        scenario.queue.append(scenario.deployments[uuid])
        return {
            "message": "Application working deployment queued.",
            "resource_uuid": APP_UUID,
            "deployment_uuid": uuid,
        }

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    scenario: Scenario

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def already_in_queue(scenario: Scenario, uuid: str, statuses: list[str], **kw: Any) -> Deployment:
    deployment = Deployment(uuid, statuses, **kw)
    scenario.queue.append(deployment)
    scenario.deployments[uuid] = deployment
    return deployment


@pytest.fixture
def coolify() -> Iterator[Server]:
    server = Server(("127.0.0.1", 0), FakeCoolify)
    server.scenario = Scenario()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


FAST = ["--poll-interval", "0.05", "--backoff", "0.05", "--timeout", "5", "--health-timeout", "2"]


def run_script(server_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": "/usr/bin:/bin",
        "COOLIFY_URL": server_url,
        "COOLIFY_TOKEN": TOKEN,
        "COOLIFY_APP_UUID": APP_UUID,
        "APP_URL": server_url,
        **env,
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *FAST, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert TOKEN not in output, "the token was printed"
    assert TOKEN.split("|")[1] not in output, "part of the token was printed"
    return result


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- the matrix ------------------------------------------------------------------------------


def test_success_after_some_polls(coolify):
    coolify.scenario.statuses = ["queued", "queued", "in_progress", "in_progress", "finished"]
    result = run_script(coolify.url, "--expect-commit", COMMIT)
    assert result.returncode == 0, result.stderr
    assert coolify.scenario.polls == 5
    for status in ("queued", "in_progress", "finished"):
        assert f"deployment {DEPLOYMENT_UUID}: {status}" in result.stdout
    assert f"serves {COMMIT}" in result.stdout
    methods = [(method, path) for method, path, _, _ in coolify.scenario.requests]
    assert ("POST", "/api/v1/deploy") in methods
    assert ("GET", "/api/v1/deploy") not in methods
    _, _, query, _ = next(r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy")
    # No `force=false`: Coolify before v4.2.0 would read it as a forced rebuild.
    assert query == {"uuid": APP_UUID}
    assert coolify.scenario.forced == [False]


def test_force_is_sent_only_when_asked(coolify):
    result = run_script(coolify.url, "--force", "--expect-commit", COMMIT)
    assert result.returncode == 0, result.stderr
    _, _, query, _ = next(r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy")
    assert query == {"uuid": APP_UUID, "force": "true"}
    assert coolify.scenario.forced == [True]


def test_sets_the_image_tag_before_deploying(coolify):
    result = run_script(coolify.url, "--image-tag", COMMIT, "--expect-commit", COMMIT[:12])
    assert result.returncode == 0, result.stderr
    assert coolify.scenario.envs["IMAGE_TAG"] == COMMIT
    paths = [path for _, path, _, _ in coolify.scenario.requests]
    assert paths.index(f"/api/v1/applications/{APP_UUID}/envs") < paths.index("/api/v1/deploy")


def test_creates_the_image_tag_variable_when_missing(coolify):
    coolify.scenario.envs = {}
    result = run_script(coolify.url, "--image-tag", COMMIT, "--expect-commit", COMMIT)
    assert result.returncode == 0, result.stderr
    assert coolify.scenario.envs == {"IMAGE_TAG": COMMIT}
    env_calls = [m for m, path, _, _ in coolify.scenario.requests if path.endswith("/envs")]
    assert env_calls == ["GET", "PATCH", "POST"]
    assert f"previous IMAGE_TAG not set on the resource yet; the live /health serves {COMMIT}" in (
        result.stdout
    )
    assert f"created IMAGE_TAG={COMMIT}" in result.stdout


@pytest.mark.parametrize("final", ["failed", "cancelled-by-user"])
def test_deployment_that_fails(coolify, final):
    coolify.scenario.statuses = ["queued", "in_progress", final]
    result = run_script(coolify.url, "--expect-commit", COMMIT)
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert f"ended as {final}" in line
    health_calls = [path for _, path, _, _ in coolify.scenario.requests if path == "/health"]
    assert health_calls == [], "no health check after a failed deployment"


def test_deployment_that_never_ends_times_out(coolify):
    coolify.scenario.statuses = ["in_progress"]
    result = run_script(coolify.url, "--timeout", "0.5")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert "still in_progress after 0.5s" in line


def test_bad_token_fails_at_once_in_one_line(coolify):
    result = run_script(coolify.url, COOLIFY_TOKEN="wrong-token")
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert line.startswith("error: POST /deploy")
    assert "HTTP 401" in line
    assert "COOLIFY_TOKEN" in line
    assert len(coolify.scenario.requests) == 1, "a 401 is not retried"


def test_token_echoed_by_the_server_is_redacted(coolify):
    coolify.scenario.deploy_replies = [Reply(403, {"message": f"Forbidden for Bearer {TOKEN}"})]
    result = run_script(coolify.url)  # run_script asserts the token is absent
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "Bearer ***" in line
    assert "HTTP 403" in line


def test_429_is_retried_after_retry_after(coolify):
    coolify.scenario.deploy_replies = [
        Reply(429, {"message": "Deployment queue is full."}, {"Retry-After": "1"}),
    ]
    started = time.monotonic()
    result = run_script(coolify.url, "--expect-commit", COMMIT)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "HTTP 429 Deployment queue is full.; retry 1/4 in 1s" in result.stdout
    assert elapsed >= 1.0, "Retry-After was not honoured"
    deploys = [r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy"]
    assert len(deploys) == 2


def test_5xx_then_success(coolify):
    coolify.scenario.deploy_replies = [
        Reply(502, {"message": "Bad Gateway"}),
        Reply(503, None),
    ]
    result = run_script(coolify.url, "--expect-commit", COMMIT)
    assert result.returncode == 0, result.stderr
    assert "HTTP 502 Bad Gateway; retry 1/4" in result.stdout
    assert "HTTP 503 (empty body); retry 2/4" in result.stdout


def test_5xx_forever_is_bounded(coolify):
    coolify.scenario.deploy_replies = [Reply(500, {"message": "Server Error"})] * 10
    result = run_script(coolify.url, "--attempts", "3")
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "gave up after 3 attempts" in line
    assert len([r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy"]) == 3


def test_unreachable_coolify_is_bounded():
    with Server(("127.0.0.1", 0), FakeCoolify) as closed:
        url = closed.url  # bound, then closed: nothing listens there
    result = run_script(url, "--attempts", "2")
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "no answer" in line
    assert "gave up after 2 attempts" in line


def test_unknown_resource_is_404(coolify):
    result = run_script(coolify.url, COOLIFY_APP_UUID="nope")
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "HTTP 404: No resources found." in line
    assert "COOLIFY_APP_UUID" in line


def test_get_on_deploy_is_405_and_explained(coolify):
    """What an old GET-based script would get; the client names the cause."""
    client = deploy.Client(deploy.api_base(coolify.url), TOKEN, deploy.Output([TOKEN]))
    with pytest.raises(deploy.ApiError) as raised:
        client.request("GET", "/deploy", query={"uuid": APP_UUID})
    assert raised.value.status == 405
    assert "POST" in str(raised.value)
    assert len(coolify.scenario.requests) == 1, "a 405 is not retried"


def test_live_commit_mismatch_fails(coolify):
    coolify.scenario.health = [Reply(200, {"status": "ok", "git_commit": "fedcba9876543210"})]
    result = run_script(coolify.url, "--expect-commit", COMMIT, "--health-timeout", "0.3")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert f"git_commit {COMMIT}" in line
    assert "git_commit=fedcba9876543210" in line


def test_health_waits_for_the_new_version(coolify):
    """Traefik may still route to nothing (502) or the app may still start (503)."""
    coolify.scenario.health = [
        Reply(502, None),
        Reply(503, {"status": "starting", "git_commit": COMMIT}),
        Reply(200, {"status": "ok", "git_commit": "oldoldoldold"}),
        Reply(200, {"status": "ok", "git_commit": COMMIT, "version": "0.1.0"}),
    ]
    result = run_script(coolify.url, "--expect-commit", COMMIT)
    assert result.returncode == 0, result.stderr
    assert "health: HTTP 502" in result.stdout
    assert f"serves {COMMIT} (0.1.0)" in result.stdout


def test_service_resource_is_confirmed_by_health(coolify):
    coolify.scenario.service = True
    result = run_script(coolify.url, "--kind", "service", "--expect-commit", COMMIT)
    assert result.returncode == 0, result.stderr
    assert "Service working started" in result.stdout
    assert coolify.scenario.polls == 0


def test_service_resource_without_health_check_is_refused(coolify):
    coolify.scenario.service = True
    result = run_script(coolify.url, "--kind", "service", "--no-health-check")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED


def test_an_application_coolify_does_not_deploy_fails_in_one_line(coolify):
    """'Unauthorized to deploy this application.' comes without a deployment_uuid: not a
    Service to confirm through /health, but a refusal."""
    coolify.scenario.may_deploy = False
    result = run_script(coolify.url, "--expect-commit", COMMIT)
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "Coolify started no deployment of application" in line
    assert "Unauthorized to deploy this application." in line
    assert "--kind service" in line
    assert [path for _, path, _, _ in coolify.scenario.requests] == ["/api/v1/deploy"]


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("COOLIFY_TOKEN", "COOLIFY_TOKEN is not set"),
        ("COOLIFY_URL", "COOLIFY_URL is not set"),
        ("COOLIFY_APP_UUID", "COOLIFY_APP_UUID is not set"),
        ("APP_URL", "APP_URL is not set"),
    ],
)
def test_missing_configuration_is_a_usage_error(coolify, missing, message):
    result = run_script(coolify.url, **{missing: ""})
    assert result.returncode == deploy.EXIT_USAGE
    assert message in result.stderr
    assert coolify.scenario.requests == []


def test_github_annotation(coolify):
    result = run_script(coolify.url, COOLIFY_TOKEN="wrong", GITHUB_ACTIONS="true")
    assert result.stderr.startswith("::error title=Coolify deploy::POST /deploy?")
    assert "HTTP 401: Unauthenticated." in result.stderr


# --- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://coolify.example.com", "https://coolify.example.com/api/v1"),
        ("https://coolify.example.com/", "https://coolify.example.com/api/v1"),
        ("https://coolify.example.com/api/v1/", "https://coolify.example.com/api/v1"),
        ("http://10.0.0.2:8000", "http://10.0.0.2:8000/api/v1"),
    ],
)
def test_api_base(url, expected):
    assert deploy.api_base(url) == expected


@pytest.mark.parametrize("url", ["coolify.example.com", "file:///etc/passwd", "ftp://x"])
def test_api_base_refuses_other_schemes(url):
    with pytest.raises(deploy.UsageError):
        deploy.api_base(url)


def test_parse_retry_after():
    assert deploy.parse_retry_after("60") == 60
    assert deploy.parse_retry_after(None) is None
    assert deploy.parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:50 GMT"  # now + 30 s
    assert deploy.parse_retry_after(date, now=lambda: now) == pytest.approx(30)


def test_retry_after_is_capped(coolify):
    coolify.scenario.deploy_replies = [
        Reply(429, {"message": "slow down"}, {"Retry-After": "3600"})
    ]
    sleeps: list[float] = []
    client = deploy.Client(
        deploy.api_base(coolify.url),
        TOKEN,
        deploy.Output([TOKEN]),
        retry_after_max=0.2,
        sleep=sleeps.append,
    )
    status, data = client.request("POST", "/deploy", query={"uuid": APP_UUID})
    assert status == 200
    assert data["deployments"][0]["deployment_uuid"] == DEPLOYMENT_UUID
    assert sleeps == [0.2]


def test_backoff_grows_and_is_capped(coolify):
    coolify.scenario.deploy_replies = [Reply(503, None)] * 5
    sleeps: list[float] = []
    client = deploy.Client(
        deploy.api_base(coolify.url),
        TOKEN,
        deploy.Output([TOKEN]),
        attempts=6,
        backoff=1,
        backoff_max=4,
        sleep=sleeps.append,
    )
    status, _ = client.request("POST", "/deploy", query={"uuid": APP_UUID})
    assert status == 200
    assert sleeps == [1, 2, 4, 4, 4]


@pytest.mark.parametrize(
    ("reported", "expected", "same"),
    [
        (COMMIT, COMMIT, True),
        (COMMIT[:7], COMMIT, True),
        (COMMIT, COMMIT[:12].upper(), True),
        (COMMIT[:6], COMMIT, False),
        ("unknown", COMMIT, False),
        (None, COMMIT, False),
        ("fedcba9", COMMIT, False),
    ],
)
def test_same_commit(reported, expected, same):
    assert deploy.same_commit(reported, expected) is same


def test_output_redacts_every_secret(capsys):
    deploy.Output(["s3cr3t", ""]).line("a s3cr3t b s3cr3t")
    assert capsys.readouterr().out == "a *** b ***\n"


# --- the registry: the tag must exist before anything changes ---------------------------------

REGISTRY_USER = "ci-bot"
REGISTRY_TOKEN = "ghp_registrySECRET0123456789"
PULL_TOKEN = "pull-token-SECRET-abcdef"
REPOSITORY = "owner/working"
DIGEST = "sha256:" + "ab" * 32


@dataclass
class RegistryState:
    tags: set[str] = field(default_factory=lambda: {PREVIOUS, COMMIT})
    # Like GHCR for a private package: a pull token only for the right login.
    anonymous: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)


class FakeRegistry(BaseHTTPRequestHandler):
    """The parts of the OCI Distribution API `skopeo inspect` uses, with GHCR's token dance."""

    server: RegistryServer

    def log_message(self, *args):
        pass

    def _send(self, status: int, headers: dict[str, str], body: Any = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        state = self.server.state
        url = urllib.parse.urlsplit(self.path)
        state.requests.append((self.command, url.path))
        if url.path == "/token":
            query = dict(urllib.parse.parse_qsl(url.query))
            login = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_TOKEN}".encode()).decode()
            allowed = state.anonymous or self.headers.get("Authorization") == f"Basic {login}"
            if query.get("scope") != f"repository:{REPOSITORY}:pull" or not allowed:
                return self._send(401, {}, {"errors": [{"code": "UNAUTHORIZED"}]})
            return self._send(200, {"Content-Type": "application/json"}, {"token": PULL_TOKEN})
        prefix = f"/v2/{REPOSITORY}/manifests/"
        if not url.path.startswith(prefix):
            return self._send(404, {}, {"errors": [{"code": "NAME_UNKNOWN"}]})
        if self.headers.get("Authorization") != f"Bearer {PULL_TOKEN}":
            realm = f"{self.server.url}/token"
            challenge = (
                f'Bearer realm="{realm}",service="fake-registry",'
                f'scope="repository:{REPOSITORY}:pull"'
            )
            return self._send(401, {"WWW-Authenticate": challenge}, {"errors": []})
        if url.path.removeprefix(prefix) not in state.tags:
            return self._send(404, {}, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        media = "application/vnd.oci.image.manifest.v1+json"
        assert media in self.headers.get("Accept", "")
        return self._send(200, {"Content-Type": media, "Docker-Content-Digest": DIGEST}, {})

    def do_HEAD(self):
        self._handle()

    def do_GET(self):
        self._handle()


class RegistryServer(ThreadingHTTPServer):
    daemon_threads = True
    state: RegistryState

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def image(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}/{REPOSITORY}"


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    server = RegistryServer(("127.0.0.1", 0), FakeRegistry)
    server.state = RegistryState()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def run_with_registry(coolify, registry, tag: str, *args: str, **env: str):
    env = {"REGISTRY_USER": REGISTRY_USER, "REGISTRY_TOKEN": REGISTRY_TOKEN, **env}
    result = run_script(
        coolify.url,
        "--image",
        registry.image,
        "--insecure-registry",
        "--image-tag",
        tag,
        "--expect-commit",
        tag,
        *args,
        **env,
    )
    output = result.stdout + result.stderr
    assert REGISTRY_TOKEN not in output, "the registry token was printed"
    assert PULL_TOKEN not in output, "the pull token was printed"
    return result


def test_a_tag_missing_from_the_registry_changes_nothing(coolify, registry):
    missing = "f" * 40
    result = run_with_registry(coolify, registry, missing)
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert f"{registry.image}:{missing} is not in the registry: nothing was changed" in line
    assert coolify.scenario.requests == [], "Coolify was touched"
    assert coolify.scenario.envs == {"IMAGE_TAG": "old"}
    assert ("HEAD", f"/v2/{REPOSITORY}/manifests/{missing}") in registry.state.requests


def test_a_tag_in_the_registry_is_found_with_a_pull_token_then_deployed(coolify, registry):
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == 0, result.stderr
    assert f"registry: {registry.image}:{COMMIT} exists ({DIGEST})" in result.stdout
    assert coolify.scenario.envs["IMAGE_TAG"] == COMMIT
    # The registry was asked first, Coolify second.
    assert registry.state.requests[0][0] == "HEAD"
    assert ("GET", "/token") in registry.state.requests


def test_a_refused_registry_login_fails_in_one_line_and_changes_nothing(coolify, registry):
    result = run_with_registry(coolify, registry, COMMIT, REGISTRY_TOKEN="wrong")
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "token service answered HTTP 401" in line
    assert "REGISTRY_TOKEN" in line
    assert coolify.scenario.requests == []


def test_an_unreachable_registry_is_bounded_and_changes_nothing(coolify):
    with Server(("127.0.0.1", 0), FakeCoolify) as closed:
        host, port = closed.server_address[:2]
    result = run_script(
        coolify.url,
        "--image",
        f"{host}:{port}/{REPOSITORY}",
        "--insecure-registry",
        "--image-tag",
        COMMIT,
        "--attempts",
        "2",
    )
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "gave up after 2 attempts" in line
    assert coolify.scenario.requests == []


@pytest.mark.parametrize(
    "image", ["working", "ghcr.io/owner/working:latest", "ghcr.io/owner/working@sha256:00"]
)
def test_image_must_name_a_registry_and_no_tag(image):
    with pytest.raises(deploy.UsageError):
        deploy.split_image(image)


# --- a failed deploy restores the previous IMAGE_TAG ------------------------------------------

PREVIOUS = "9876543210fedcba9876543210fedcba98765432"


@pytest.fixture
def live_previous(coolify):
    """The resource runs PREVIOUS; /health tells the truth about whichever tag is live."""
    coolify.scenario.envs = {"IMAGE_TAG": PREVIOUS}
    coolify.scenario.live = PREVIOUS
    coolify.scenario.health = None
    return coolify


@pytest.mark.parametrize(
    ("where", "rolled_back", "deploys"),
    [
        # `up -d` failed after Coolify stopped the old container: the previous one is redeployed.
        ("start", "is deployed again and /health serves it", 2),
        # The custom build command's pull failed before the stop (deploy_docker_compose_buildpack):
        # the previous commit still serves, only the tag is restored.
        ("pull", "restored, no redeploy needed", 1),
    ],
    ids=["up-failed", "pull-failed"],
)
def test_a_failed_deployment_restores_the_previous_tag_and_says_so(
    live_previous, registry, where, rolled_back, deploys
):
    coolify = live_previous
    coolify.scenario.statuses = ["queued", "in_progress", "failed"]
    if where == "pull":
        coolify.scenario.unpullable = {COMMIT}
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert f"deployment {DEPLOYMENT_UUID} ended as failed" in line
    assert f"rolled back: IMAGE_TAG={PREVIOUS} {rolled_back}" in line
    assert f"previous IMAGE_TAG={PREVIOUS}" in result.stdout
    assert f"restoring IMAGE_TAG={PREVIOUS}" in result.stdout
    assert coolify.scenario.envs["IMAGE_TAG"] == PREVIOUS
    assert coolify.scenario.live == PREVIOUS
    assert len([r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy"]) == deploys


def test_a_new_version_that_never_turns_healthy_is_rolled_back(live_previous, registry):
    coolify = live_previous
    coolify.scenario.unhealthy = {COMMIT}
    result = run_with_registry(coolify, registry, COMMIT, "--health-timeout", "0.5")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert "did not answer 200" in line
    assert "rolled back" in line
    assert "health: HTTP 503, status=degraded" in result.stdout
    assert coolify.scenario.live == PREVIOUS


def test_a_rollback_that_fails_too_says_the_site_may_be_down(live_previous, registry):
    coolify = live_previous
    coolify.scenario.statuses = ["queued", "failed"]
    coolify.scenario.later_statuses = [["queued", "failed"]]
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert f"the rollback to IMAGE_TAG={PREVIOUS} failed too" in line
    assert "the site may be down" in line


def test_a_refused_deploy_restores_the_tag_without_a_redeploy(live_previous, registry):
    coolify = live_previous
    coolify.scenario.may_deploy = False
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == deploy.EXIT_API
    [line] = _error_lines(result)
    assert "Unauthorized to deploy this application." in line
    assert f"IMAGE_TAG={PREVIOUS} restored, no redeploy needed" in line
    assert coolify.scenario.envs["IMAGE_TAG"] == PREVIOUS
    assert len([r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy"]) == 1


def test_a_deployment_still_running_at_its_deadline_is_redeployed_over(live_previous, registry):
    """Timed out, not ended: it may still put the new tag live, so the previous one is deployed
    after it even though /health still serves the previous commit."""
    coolify = live_previous
    coolify.scenario.statuses = ["in_progress"]
    result = run_with_registry(coolify, registry, COMMIT, "--timeout", "0.5")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    assert "still in_progress after 0.5s" in line
    assert f"rolled back: IMAGE_TAG={PREVIOUS} is deployed again" in line
    assert len([r for r in coolify.scenario.requests if r[1] == "/api/v1/deploy"]) == 2


def test_the_budget_keeps_the_rollbacks_share(live_previous, registry):
    """--budget 7.5 with --timeout 5 and --health-timeout 2 keeps 7 s for a rollback: the
    deployment gets 0.5 s, then the tag is restored and redeployed within the rest."""
    coolify = live_previous
    coolify.scenario.statuses = ["in_progress"]
    result = run_with_registry(coolify, registry, COMMIT, "--budget", "7.5")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    [line] = _error_lines(result)
    [waited] = [w for w in line.split() if w.endswith("s;")][:1]
    assert float(waited.removesuffix("s;")) <= 0.5, line
    assert coolify.scenario.envs["IMAGE_TAG"] == PREVIOUS
    assert f"rolled back: IMAGE_TAG={PREVIOUS} is deployed again" in line


def test_a_budget_without_room_to_deploy_is_a_usage_error(coolify):
    result = run_script(coolify.url, "--budget", "7")  # FAST: --timeout 5 --health-timeout 2
    assert result.returncode == deploy.EXIT_USAGE
    [line] = _error_lines(result)
    assert "--budget 7 leaves no time to deploy" in line
    assert coolify.scenario.requests == []


def test_no_request_starts_once_the_budget_is_spent(coolify):
    spent = deploy.Deadline(at=time.monotonic() - 1)
    client = deploy.Client(
        deploy.api_base(coolify.url), TOKEN, deploy.Output([TOKEN]), deadline=spent
    )
    with pytest.raises(deploy.ApiError, match="--budget is spent"):
        client.request("POST", "/deploy", query={"uuid": APP_UUID})
    assert coolify.scenario.requests == []


def test_no_rollback_leaves_the_failed_tag(live_previous, registry):
    coolify = live_previous
    coolify.scenario.statuses = ["queued", "failed"]
    result = run_with_registry(coolify, registry, COMMIT, "--no-rollback")
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    assert coolify.scenario.envs["IMAGE_TAG"] == COMMIT
    assert "rolled back" not in result.stderr


def test_without_read_sensitive_the_live_commit_is_what_is_restored(live_previous, registry):
    coolify = live_previous
    coolify.scenario.sensitive = False
    coolify.scenario.statuses = ["queued", "failed"]
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == deploy.EXIT_DEPLOY_FAILED
    assert "the token needs read:sensitive" in result.stdout
    assert f"the live /health serves {PREVIOUS}" in result.stdout
    assert coolify.scenario.envs["IMAGE_TAG"] == PREVIOUS
    assert coolify.scenario.live == PREVIOUS


# --- "Deployment already queued" ---------------------------------------------------------------


def test_an_already_queued_deployment_is_followed(live_previous, registry):
    coolify = live_previous
    # Queued (not started) when we set IMAGE_TAG: it reads the new tag when it starts.
    already_in_queue(
        coolify.scenario, "dep-waiting", ["queued", "queued", "in_progress", "finished"]
    )
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == 0, result.stderr
    assert "coolify: Deployment already queued for this commit." in result.stdout
    assert "following the app's queued deployment dep-waiting" in result.stdout
    assert "deployment dep-waiting: finished" in result.stdout
    paths = [path for _, path, _, _ in coolify.scenario.requests]
    assert not any("never-created" in path for path in paths), "followed the phantom uuid"
    assert f"/api/v1/deployments/applications/{APP_UUID}" in paths
    assert paths.count("/api/v1/deploy") == 1, "a queued deployment needs no second one"
    assert coolify.scenario.live == COMMIT


def test_a_running_deployment_is_waited_for_then_deployed_again(live_previous, registry):
    coolify = live_previous
    # Running since before IMAGE_TAG changed: it deploys PREVIOUS, so one more is needed.
    running = already_in_queue(coolify.scenario, "dep-running", ["in_progress"] * 3 + ["finished"])
    running.tag = PREVIOUS
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == 0, result.stderr
    assert "deployment dep-running was already running" in result.stdout
    paths = [path for _, path, _, _ in coolify.scenario.requests]
    assert paths.count("/api/v1/deploy") == 2
    assert coolify.scenario.live == COMMIT
    assert f"serves {COMMIT}" in result.stdout


def test_preview_deployments_are_not_the_apps_queued_deployment(live_previous, registry):
    """The list holds previews too; a queued preview is newer here, and must not be followed."""
    coolify = live_previous
    already_in_queue(coolify.scenario, "dep-waiting", ["queued", "in_progress", "finished"])
    already_in_queue(coolify.scenario, "dep-preview", ["queued"], pull_request_id=7)
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == 0, result.stderr
    assert "following the app's queued deployment dep-waiting" in result.stdout
    assert "dep-preview" not in result.stdout
    assert coolify.scenario.live == COMMIT


def test_a_running_deployment_with_a_resolved_commit_gets_a_new_one_queued(live_previous, registry):
    """Coolify matches only `HEAD`: a running deployment that resolved its commit is no
    "already queued", so the trigger queues a fresh deployment, which reads the new tag."""
    coolify = live_previous
    running = already_in_queue(
        coolify.scenario, "dep-running", ["in_progress"], commit=BRANCH_TIP, tag=PREVIOUS
    )
    result = run_with_registry(coolify, registry, COMMIT)
    assert result.returncode == 0, result.stderr
    assert "already queued" not in result.stdout
    assert f"deployment {DEPLOYMENT_UUID}-1: finished" in result.stdout
    paths = [path for _, path, _, _ in coolify.scenario.requests]
    assert paths.count("/api/v1/deploy") == 1
    assert f"/api/v1/deployments/{running.uuid}" not in paths
    assert coolify.scenario.live == COMMIT
