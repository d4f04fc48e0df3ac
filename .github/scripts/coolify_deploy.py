#!/usr/bin/env python3
"""Redeploy a Coolify resource and wait until the new version serves; undo a deploy that fails.

    COOLIFY_URL=https://coolify.example.com COOLIFY_TOKEN=... COOLIFY_APP_UUID=... \
    REGISTRY_USER=... REGISTRY_TOKEN=... \
      python3 .github/scripts/coolify_deploy.py --image ghcr.io/owner/working \
        --image-tag "$GITHUB_SHA" --app-url https://app.example.com --expect-commit "$GITHUB_SHA"

Steps, each optional but the trigger:
1. `--image` with `--image-tag`: ask the registry (OCI Distribution API, what `skopeo inspect`
   asks) whether the tag exists, before anything changes on Coolify. A compose resource stops
   its container before `up -d` pulls the image, so a missing tag, like an expired registry
   login on the server, would leave nothing running.
2. `--image-tag`: remember the resource's IMAGE_TAG (GET .../envs: the value is visible to a
   token with `read:sensitive`; otherwise the live /health git_commit stands in), then set it
   (PATCH, or POST when it does not exist yet) so compose.yaml runs the image of this commit.
3. Trigger: `POST /api/v1/deploy?uuid=<uuid>`, with `&force=true` only for `--force` (GET
   answers 405 since Coolify moved the endpoint to POST; `force=false` would be read as true
   before v4.2.0, which casts the string instead of `$request->boolean('force')`). The answer
   is `{"deployments": [{"message", "resource_uuid", "deployment_uuid"}]}`. A Service resource
   (`--kind service`) gets no deployment_uuid, only a message; an application that gets none
   was refused ("Unauthorized to deploy this application."): that fails in one line.
   Coolify answers "Deployment already queued for this commit." with a fresh uuid that names no
   deployment (DeployController::deploy_resource) when the app has a deployment with
   pull_request_id 0 that is queued, or running but has not resolved `HEAD` to a sha yet
   (queue_application_deployment compares the commit; a running compose deployment replaces
   it with the sha early, in check_git_if_build_needed, and is then not matched: a new
   deployment is queued behind it and reads the new IMAGE_TAG when it starts). On that answer
   the script follows the app's queued deployment (GET /deployments/applications/<uuid>,
   previews left out), or waits for the running one, which may have read the old IMAGE_TAG,
   and triggers again.
4. Poll `GET /api/v1/deployments/<deployment_uuid>` until its status is `finished`, `failed` or
   `cancelled-by-user` (Coolify's ApplicationDeploymentStatus; `queued`/`in_progress` go on).
5. `--app-url`: poll `<app-url>/health` until it answers 200 with the expected `git_commit`.
   A compose deploy is "finished" once `up -d` returns, healthy or not: this is the gate.
6. When 3, 4 or 5 fails after IMAGE_TAG was changed: set IMAGE_TAG back first. If the failed
   deployment is over and /health still reports the previous commit (the pull of the custom
   build command failed before Coolify stopped the old container, or Coolify refused the
   deploy), that is all; otherwise redeploy and verify the previous commit. Say which
   (`--no-rollback` leaves the failed tag in place).

Time: the whole run, rollback included, ends within `--budget` seconds (default 1500, below
the deploy job's `timeout-minutes`, which tests/test_workflow.py reads from ci.yml): the
deploy and its health check get the budget minus what a rollback may need (`--timeout` +
`--health-timeout`), no request starts and no wait lasts past the budget, so a job that runs
out of time never kills the script between "IMAGE_TAG changed" and "IMAGE_TAG restored".

HTTP: 429 (Coolify sends Retry-After when its deployment queue is full), 5xx and connection
errors are retried with bounded exponential backoff; other 4xx fail at once with one line.
The tokens are read from the environment only, sent only to their own host and never
printed: every line of output passes through `redact`.

Exit codes: 0 deployed (and verified); 1 the image is not in the registry, or the deployment
failed, was cancelled, timed out or serves another commit (rolled back when possible); 2 usage
or configuration error; 3 the API or the registry refused the request (Coolify refusing to
deploy an application is rolled back too) or stayed unreachable.
Standard library only, so it runs on any runner with Python 3.11+.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import http.client
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TextIO

EXIT_OK = 0
EXIT_DEPLOY_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3

PENDING = {"queued", "in_progress"}
SUCCEEDED = {"finished"}
FAILED = {"failed", "cancelled-by-user", "cancelled"}

USER_AGENT = "working-coolify-deploy/1"

HINTS = {
    400: "Coolify rejected the request (an invalid token is also reported as 400)",
    401: "the token is invalid or revoked: check the COOLIFY_TOKEN secret",
    403: "the token lacks a permission (it needs read, write and deploy) "
    "or the API is disabled in Coolify's Settings",
    404: "not found: check COOLIFY_APP_UUID (the resource's uuid, from its URL in Coolify)",
    405: "method not allowed: this Coolify wants POST for /deploy (GET answers 405 since v4.2)",
    422: "Coolify could not validate the request",
}


class DeployError(Exception):
    """A failure with an exit code and one line for the log."""

    exit_code = EXIT_API


class ApiError(DeployError):
    def __init__(self, method: str, path: str, status: int | None, detail: str):
        self.status = status
        where = f"{method} {path}"
        head = f"HTTP {status}" if status is not None else "no answer"
        hint = HINTS.get(status or 0, "")
        super().__init__(f"{where}: {head}: {detail}" + (f" ({hint})" if hint else ""))


class DeploymentFailed(DeployError):
    """`ended`: the failed deployment is over, so nothing it started can still go live."""

    exit_code = EXIT_DEPLOY_FAILED

    def __init__(self, message: str, *, ended: bool = True):
        super().__init__(message)
        self.ended = ended


class NothingDeployed(DeployError):
    """Coolify answered the trigger of an application without starting a deployment."""


class UsageError(DeployError):
    exit_code = EXIT_USAGE


def amended(error: DeployError, text: str) -> DeployError:
    """The same error (and exit code), its one line extended by `text`."""
    error.args = (f"{error}; {text}",)
    return error


@dataclass
class Deadline:
    """When the run must be over: no request starts and no wait lasts past `at` (monotonic s).
    Moved by `run`: earlier while deploying, so that a rollback keeps its share."""

    at: float = math.inf
    clock: Callable[[], float] = time.monotonic

    def left(self) -> float:
        return self.at - self.clock()

    def bound(self, seconds: float) -> float:
        """`seconds`, or what is left if that is less."""
        return max(0.0, min(seconds, self.left()))


# --- output ----------------------------------------------------------------------------------


@dataclass
class Output:
    """Prints one line at a time with every secret replaced by ***."""

    secrets: Sequence[str] = ()
    stream: TextIO = field(default_factory=lambda: sys.stdout)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def line(self, text: str) -> None:
        print(self.redact(text), file=self.stream, flush=True)


# --- HTTP ------------------------------------------------------------------------------------


def http_url(url: str, name: str) -> str:
    """A base URL without its trailing slash; only http(s)."""
    url = url.strip().rstrip("/")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"{name} is not an http(s) URL: {url!r}")
    return url


def api_base(url: str) -> str:
    """`https://coolify.example.com`, with or without a trailing `/api/v1`, to the API base."""
    url = http_url(url, "COOLIFY_URL")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    return url + "/api/v1"


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _detail(body: bytes) -> str:
    """The `message` of a JSON error, else the start of the body, on one line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        text = str(data["message"])
        errors = data.get("errors")
        if isinstance(errors, dict):
            text += " " + "; ".join(f"{key}: {value}" for key, value in errors.items())
    text = " ".join(text.split())
    return (text[:200] + "...") if len(text) > 200 else (text or "(empty body)")


@dataclass
class Client:
    """A small JSON client with bounded retries. `sleep` and `clock` are injectable for tests."""

    base_url: str
    token: str | None
    out: Output
    timeout: float = 30.0
    attempts: int = 5
    backoff: float = 2.0
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    deadline: Deadline = field(default_factory=Deadline)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        authenticated: bool = True,
        any_status: bool = False,
    ) -> tuple[int, Any]:
        """(status, parsed JSON). Retries 429/5xx/connection errors; raises ApiError for other
        4xx, or once retries are exhausted. `any_status` returns every HTTP answer instead."""
        url = self.base_url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if authenticated and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        shown = path if not query else f"{path}?{urllib.parse.urlencode(query)}"

        for attempt in range(1, self.attempts + 1):
            if self.deadline.left() <= 0:
                raise ApiError(method, shown, None, "not sent: the run's --budget is spent")
            wait = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
            # The scheme was checked to be http(s) by http_url.
            request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
            timeout = max(0.1, self.deadline.bound(self.timeout))
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    payload = response.read()
                    return response.status, _json(payload)
            except urllib.error.HTTPError as error:
                payload = error.read()
                status = error.code
                if any_status:
                    return status, _json(payload)
                if status == 429:
                    retry_after = parse_retry_after(error.headers.get("Retry-After"))
                    if retry_after is not None:
                        wait = min(retry_after, self.retry_after_max)
                    problem = f"HTTP 429 {_detail(payload)}"
                elif status >= 500:
                    problem = f"HTTP {status} {_detail(payload)}"
                else:
                    raise ApiError(method, shown, status, _detail(payload)) from None
            except (OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                problem = f"{type(reason).__name__}: {reason}"
            if attempt == self.attempts:
                raise ApiError(
                    method, shown, None, f"gave up after {attempt} attempts, last: {problem}"
                )
            self.out.line(
                f"{method} {shown}: {problem}; retry {attempt}/{self.attempts - 1} in {wait:g}s"
            )
            self.sleep(self.deadline.bound(wait))
        raise AssertionError("unreachable")  # pragma: no cover


def _json(payload: bytes) -> Any:
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


# --- the registry ----------------------------------------------------------------------------

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(DeployError):
    """The registry refused the question or stayed unreachable."""


def split_image(image: str) -> tuple[str, str]:
    """`ghcr.io/owner/working` -> (`ghcr.io`, `owner/working`); a registry host is required."""
    host, _, repository = image.strip().partition("/")
    if not repository or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(f"--image must name its registry, e.g. ghcr.io/owner/working: {image!r}")
    if ":" in repository or "@" in repository:
        raise UsageError(f"--image takes no tag or digest (give it as --image-tag): {image!r}")
    return host, repository


@dataclass
class Registry:
    """Asks a registry whether a tag exists: HEAD /v2/<repository>/manifests/<tag>, with the
    token dance registries such as GHCR require (401 + `WWW-Authenticate: Bearer realm=...`,
    then a pull token from the realm, with REGISTRY_USER/REGISTRY_TOKEN when they are set)."""

    out: Output
    username: str = ""
    password: str = ""
    scheme: str = "https"
    timeout: float = 30.0
    attempts: int = 5
    backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    deadline: Deadline = field(default_factory=Deadline)

    def digest(self, image: str, tag: str) -> str | None:
        """The manifest digest of image:tag, or None when the registry says it does not exist."""
        host, repository = split_image(image)
        url = f"{self.scheme}://{host}/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        headers = {"Accept": MANIFEST_TYPES, "User-Agent": USER_AGENT}
        status, answer, _ = self._send("HEAD", url, headers)
        if status == 401:
            headers["Authorization"] = self._authorization(answer.get("WWW-Authenticate", ""))
            status, answer, _ = self._send("HEAD", url, headers)
        if status == 200:
            return answer.get("Docker-Content-Digest") or "(no digest given)"
        if status == 404:
            return None
        hint = {
            401: "set REGISTRY_USER and REGISTRY_TOKEN to a login that may pull it",
            403: "the registry login may not pull this image",
        }.get(status, "")
        raise RegistryError(
            f"HEAD {url}: HTTP {status}" + (f" ({hint})" if hint else ""),
        )

    def _authorization(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if scheme.lower() == "basic":
            return basic
        if scheme.lower() != "bearer":
            raise RegistryError(f"the registry asks for {scheme or 'nothing'} authentication")
        fields = dict(_CHALLENGE_PARAM.findall(params))
        realm = fields.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"the registry's token realm is not an http(s) URL: {realm!r}")
        headers = {"User-Agent": USER_AGENT}
        if self.password:
            headers["Authorization"] = basic
        status, _, body = self._send("GET", f"{realm}?{urllib.parse.urlencode(fields)}", headers)
        token = _json(body) if status == 200 else None
        token = token.get("token") or token.get("access_token") if isinstance(token, dict) else None
        if not token:
            raise RegistryError(
                f"the registry's token service answered HTTP {status}: "
                "check REGISTRY_USER and REGISTRY_TOKEN (a token that may read packages)"
            )
        self.out.secrets = [*self.out.secrets, token]
        return f"Bearer {token}"

    def _send(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of any HTTP answer; retries 5xx and connection errors."""
        shown = url.split("?", 1)[0]
        for attempt in range(1, self.attempts + 1):
            if self.deadline.left() <= 0:
                raise RegistryError(f"{method} {shown}: not sent: the run's --budget is spent")
            request = urllib.request.Request(url, headers=dict(headers), method=method)  # noqa: S310
            try:
                timeout = max(0.1, self.deadline.bound(self.timeout))
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return error.code, error.headers, error.read()
                problem = f"HTTP {error.code}"
            except (OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                problem = f"{type(reason).__name__}: {reason}"
            if attempt == self.attempts:
                raise RegistryError(
                    f"{method} {shown}: no answer: gave up after {attempt} attempts, "
                    f"last: {problem}"
                )
            wait = self.backoff * 2 ** (attempt - 1)
            self.out.line(f"{method} {shown}: {problem}; retry {attempt}/{self.attempts - 1}")
            self.sleep(self.deadline.bound(wait))
        raise AssertionError("unreachable")  # pragma: no cover


def check_image(registry: Registry, image: str, tag: str) -> None:
    """Refuse to deploy a tag the registry does not have: nothing on Coolify changes."""
    digest = registry.digest(image, tag)
    if digest is None:
        raise DeploymentFailed(
            f"{image}:{tag} is not in the registry: nothing was changed on Coolify "
            "(did the push job succeed? a rollback must name a commit whose image was pushed)"
        )
    registry.out.line(f"registry: {image}:{tag} exists ({digest})")


# --- the steps -------------------------------------------------------------------------------


def set_variable(client: Client, kind: str, uuid: str, key: str, value: str) -> None:
    """Set an environment variable of the resource, creating it when it does not exist."""
    path = f"/{kind}s/{urllib.parse.quote(uuid)}/envs"
    body = {"key": key, "value": value}
    try:
        client.request("PATCH", path, body=body)
        client.out.line(f"set {key}={value} on {kind} {uuid}")
    except ApiError as error:
        if error.status != 404:
            raise
        client.request("POST", path, body=body)
        client.out.line(f"created {key}={value} on {kind} {uuid}")


def current_variable(client: Client, kind: str, uuid: str, key: str) -> tuple[bool, str | None]:
    """Whether the resource has `key`, and its value: None when empty or when the token may not
    read values (Coolify shows them only to a token with `read:sensitive`)."""
    _, data = client.request("GET", f"/{kind}s/{urllib.parse.quote(uuid)}/envs")
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and entry.get("key") == key and not entry.get("is_preview"):
            value = entry.get("value")
            return True, value if isinstance(value, str) and value else None
    return False, None


# Coolify's answer when the app has a deployment (pull_request_id 0) queued, or running with its
# commit still `HEAD` (applications.php, queue_application_deployment); the deployment_uuid
# next to it names no deployment.
ALREADY_QUEUED = "deployment already queued"


def trigger_deploy(client: Client, uuid: str, *, force: bool = False) -> list[dict[str, Any]]:
    """POST /deploy; returns the `deployments` entries for this resource. `force` is sent only
    when wanted: Coolify before v4.2.0 reads any non-empty value, "false" too, as true."""
    query = {"uuid": uuid, **({"force": "true"} if force else {})}
    _, data = client.request("POST", "/deploy", query=query)
    deployments = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise ApiError("POST", "/deploy", 200, f"unexpected answer: {json.dumps(data)[:200]}")
    for entry in deployments:
        client.out.line(f"coolify: {entry.get('message', '(no message)')}")
    return deployments


def already_queued(entry: Mapping[str, Any]) -> bool:
    return str(entry.get("message", "")).lower().startswith(ALREADY_QUEUED)


def active_deployments(client: Client, uuid: str) -> list[dict[str, Any]]:
    """The app's queued or running deployments, oldest first (the API lists newest first).
    Preview deployments are listed too; they never make Coolify answer "already queued"."""
    path = f"/deployments/applications/{urllib.parse.quote(uuid)}"
    _, data = client.request("GET", path, query={"take": "20"})
    listed = data.get("deployments") if isinstance(data, dict) else data
    active = [
        d
        for d in (listed if isinstance(listed, list) else [])
        if isinstance(d, dict)
        and d.get("status") in PENDING
        and d.get("deployment_uuid")
        and str(d.get("pull_request_id", 0)) == "0"
    ]
    return list(reversed(active))


def wait_for_deployment(
    client: Client,
    deployment_uuid: str,
    *,
    timeout: float,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    must_succeed: bool = True,
) -> str:
    """Poll the deployment until it ends; returns its final status. A failed one raises
    DeploymentFailed unless `must_succeed` is false (someone else's, waited out)."""
    deadline = clock() + timeout
    last = None
    path = f"/deployments/{urllib.parse.quote(deployment_uuid)}"
    while True:
        _, data = client.request("GET", path)
        status = str(data.get("status")) if isinstance(data, dict) else "unknown"
        if status != last:
            client.out.line(f"deployment {deployment_uuid}: {status}")
            last = status
        if status in SUCCEEDED:
            return status
        if status in FAILED and must_succeed:
            raise DeploymentFailed(
                f"deployment {deployment_uuid} ended as {status}: "
                "read its log in Coolify (the resource's Deployments tab)"
            )
        if status in FAILED:
            return status
        if status not in PENDING:
            client.out.line(f"deployment {deployment_uuid}: unknown status {status!r}, waiting")
        # No poll after the deadline: the client refuses requests once the budget is spent.
        if clock() + interval > deadline:
            raise DeploymentFailed(
                f"deployment {deployment_uuid} still {status} after {timeout:g}s; "
                "it may finish later: check Coolify before deploying again",
                ended=False,
            )
        client.sleep(interval)


def same_commit(reported: str | None, expected: str) -> bool:
    """Full or abbreviated (7+ characters) forms of the same sha match."""
    if not reported or not expected:
        return False
    reported, expected = reported.strip().lower(), expected.strip().lower()
    shortest = min(len(reported), len(expected))
    return shortest >= 7 and reported[:shortest] == expected[:shortest]


def wait_for_health(
    client: Client,
    expected_commit: str | None,
    *,
    timeout: float,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the public /health until it answers 200 (with the expected git_commit)."""
    deadline = clock() + timeout
    last = None
    while True:
        try:
            status, data = client.request("GET", "/health", authenticated=False, any_status=True)
        except ApiError as error:
            status, data = error.status, {"error": str(error)}
        data = data if isinstance(data, dict) else {}
        commit = data.get("git_commit")
        seen = f"HTTP {status}, status={data.get('status')}, git_commit={commit}"
        if seen != last:
            client.out.line(f"health: {seen}")
            last = seen
        if status == 200 and (expected_commit is None or same_commit(commit, expected_commit)):
            return data
        if clock() + interval > deadline:
            want = f" with git_commit {expected_commit}" if expected_commit else ""
            raise DeploymentFailed(
                f"{client.base_url}/health did not answer 200{want} within {timeout:g}s "
                f"(last: {seen})"
            )
        client.sleep(interval)


# --- CLI -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Redeploy a Coolify resource and wait until the new version serves.",
        epilog="The token is read from COOLIFY_TOKEN only (never from the command line).",
    )
    parser.add_argument("--url", default=environ.get("COOLIFY_URL", ""), help="$COOLIFY_URL")
    parser.add_argument(
        "--uuid",
        default=environ.get("COOLIFY_APP_UUID", ""),
        help="the resource uuid ($COOLIFY_APP_UUID)",
    )
    parser.add_argument(
        "--kind",
        choices=("application", "service"),
        default="application",
        help="the resource type, for setting variables (default: application)",
    )
    parser.add_argument("--force", action="store_true", help="Coolify's force (no build cache)")
    parser.add_argument("--image-tag", help="set the resource's IMAGE_TAG to this before deploying")
    parser.add_argument("--tag-variable", default="IMAGE_TAG", help="(default: IMAGE_TAG)")
    parser.add_argument(
        "--image",
        help="the image without tag, e.g. ghcr.io/owner/working: --image-tag must exist there "
        "before anything changes (login: $REGISTRY_USER, $REGISTRY_TOKEN)",
    )
    parser.add_argument(
        "--insecure-registry",
        action="store_true",
        help="talk plain http to the registry (a local test registry only)",
    )
    parser.add_argument(
        "--no-rollback",
        action="store_true",
        help="leave the new IMAGE_TAG in place when the deploy fails (default: restore the "
        "previous one and redeploy it)",
    )
    parser.add_argument(
        "--app-url",
        default=environ.get("APP_URL", ""),
        help="public base URL whose /health is checked afterwards ($APP_URL)",
    )
    parser.add_argument("--expect-commit", help="the git_commit /health must report")
    parser.add_argument(
        "--no-health-check",
        action="store_true",
        help="trust Coolify's status alone (not recommended)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="deployment timeout, s")
    parser.add_argument("--health-timeout", type=float, default=180, help="/health timeout, s")
    parser.add_argument(
        "--budget",
        type=float,
        default=1500,
        help="the whole run, rollback included, in s (default 1500: below the deploy job's "
        "timeout-minutes); the deploy gets it minus --timeout + --health-timeout",
    )
    parser.add_argument("--poll-interval", type=float, default=5, help="s between polls")
    parser.add_argument("--request-timeout", type=float, default=30, help="per request, s")
    parser.add_argument("--attempts", type=int, default=5, help="tries per request (>= 1)")
    parser.add_argument("--backoff", type=float, default=2, help="first retry delay, s")
    args = parser.parse_args(argv)
    if args.attempts < 1:
        parser.error("--attempts must be at least 1")
    return args


FULL_SHA = re.compile(r"[0-9a-f]{40}")


def run(args: argparse.Namespace, token: str, out: Output, environ: Mapping[str, str]) -> int:
    if not token:
        raise UsageError("COOLIFY_TOKEN is not set")
    if not args.url:
        raise UsageError("COOLIFY_URL is not set")
    if not args.uuid:
        raise UsageError("COOLIFY_APP_UUID is not set")
    if not args.app_url and not args.no_health_check:
        raise UsageError("APP_URL is not set: give --app-url, or --no-health-check to skip")
    if args.image and not args.image_tag:
        raise UsageError("--image needs --image-tag: the tag to look for in the registry")
    # What a rollback may need, kept back from the deploy so that the budget covers both.
    reserve = 0.0 if args.no_rollback else args.timeout + args.health_timeout
    if args.budget <= reserve:
        raise UsageError(
            f"--budget {args.budget:g} leaves no time to deploy: it must exceed --timeout + "
            f"--health-timeout ({reserve:g} s, kept for a rollback)"
        )
    deadline = Deadline()
    deadline.at = deadline.clock() + args.budget - reserve

    client = Client(
        api_base(args.url),
        token,
        out,
        timeout=args.request_timeout,
        attempts=args.attempts,
        backoff=args.backoff,
        deadline=deadline,
    )
    app = None
    if not args.no_health_check:
        app = Client(
            http_url(args.app_url, "APP_URL"),
            None,
            out,
            timeout=min(args.request_timeout, 10),
            attempts=1,
            sleep=client.sleep,
            deadline=deadline,
        )
    previous = None
    if args.image_tag:
        if args.image:
            registry = Registry(
                out,
                username=environ.get("REGISTRY_USER", "").strip(),
                password=environ.get("REGISTRY_TOKEN", "").strip(),
                scheme="http" if args.insecure_registry else "https",
                timeout=args.request_timeout,
                attempts=args.attempts,
                backoff=args.backoff,
                deadline=deadline,
            )
            check_image(registry, args.image, args.image_tag)
        previous = remember_previous(client, app, args)
        set_variable(client, args.kind, args.uuid, args.tag_variable, args.image_tag)

    try:
        deploy_and_verify(client, app, args, args.expect_commit)
    except (DeploymentFailed, NothingDeployed) as failure:
        if args.no_rollback or previous is None or previous == args.image_tag:
            raise
        deadline.at += reserve
        raise roll_back(client, app, args, previous, failure) from None
    return EXIT_OK


def remember_previous(client: Client, app: Client | None, args: argparse.Namespace) -> str | None:
    """What to restore if this deploy fails: the resource's tag variable, else the commit the
    live /health reports (tags are commit shas), else nothing (said so)."""
    var = args.tag_variable
    exists, value = current_variable(client, args.kind, args.uuid, var)
    if value:
        client.out.line(f"previous {var}={value}")
        return value
    why = (
        "not readable (the token needs read:sensitive to read values)"
        if exists
        else "not set on the resource yet"
    )
    commit = live_commit(app) if app is not None else None
    if commit:
        client.out.line(
            f"previous {var} {why}; the live /health serves {commit}: a failed deploy restores that"
        )
        return commit
    client.out.line(
        f"warning: previous {var} {why}, and no live commit: a failed deploy cannot be rolled back"
    )
    return None


def live_commit(app: Client) -> str | None:
    try:
        _, data = app.request("GET", "/health", authenticated=False, any_status=True)
    except ApiError:
        return None
    commit = str(data.get("git_commit", "")).lower() if isinstance(data, dict) else ""
    return commit if FULL_SHA.fullmatch(commit) else None


def deploy_and_verify(
    client: Client, app: Client | None, args: argparse.Namespace, expect: str | None
) -> None:
    follow_deploy(client, args)
    if app is None:
        client.out.line("deployed (no health check)")
        return
    timeout = app.deadline.bound(args.health_timeout)
    data = wait_for_health(app, expect, timeout=timeout, interval=args.poll_interval)
    client.out.line(f"live: {args.app_url} serves {data.get('git_commit')} ({data.get('version')})")


_TRIGGERS = 3


def follow_deploy(client: Client, args: argparse.Namespace) -> None:
    """Trigger a deployment and follow it to its end; when Coolify says one is already queued,
    follow that one, or, if it was already running (it may have read the previous IMAGE_TAG),
    wait for it and trigger again."""
    for _ in range(_TRIGGERS):
        entries = trigger_deploy(client, args.uuid, force=args.force)
        follow = {"timeout": client.deadline.bound(args.timeout), "interval": args.poll_interval}
        if not any(already_queued(e) for e in entries):
            pending = [d["deployment_uuid"] for d in entries if d.get("deployment_uuid")]
            if not pending and args.kind == "application":
                said = "; ".join(str(e.get("message") or "(no message)") for e in entries)
                raise NothingDeployed(
                    f"POST /deploy: Coolify started no deployment of application {args.uuid}: "
                    f"{said} (the token's user must be allowed to deploy it; for a Service "
                    "resource give --kind service)"
                )
            if not pending and args.no_health_check:
                raise DeploymentFailed(
                    "Coolify started the resource without a deployment to follow (a Service); "
                    "only the /health check can confirm it: drop --no-health-check"
                )
            for deployment_uuid in pending:
                wait_for_deployment(client, deployment_uuid, **follow)
            return
        active = active_deployments(client, args.uuid)
        queued = [d["deployment_uuid"] for d in active if d["status"] == "queued"]
        if queued:
            # Not started yet: it reads IMAGE_TAG when it starts, so it deploys this one.
            client.out.line(f"following the app's queued deployment {queued[-1]}")
            wait_for_deployment(client, queued[-1], **follow)
            return
        for running in active:
            client.out.line(
                f"deployment {running['deployment_uuid']} was already running and may deploy "
                "the previous IMAGE_TAG: waiting for it, then deploying again"
            )
            wait_for_deployment(client, running["deployment_uuid"], must_succeed=False, **follow)
    raise DeploymentFailed(
        f"Coolify answered 'already queued' {_TRIGGERS} times: look at the resource's "
        "Deployments tab in Coolify",
        ended=False,
    )


def roll_back(
    client: Client,
    app: Client | None,
    args: argparse.Namespace,
    previous: str,
    failure: DeploymentFailed | NothingDeployed,
) -> DeployError:
    """Restore the previous tag, then redeploy it unless it still serves; the error to report
    (the failure's own exit code), saying what happened."""
    var = args.tag_variable
    client.out.line(f"deploy of {var}={args.image_tag} failed; restoring {var}={previous}")
    try:
        set_variable(client, args.kind, args.uuid, var, previous)
        if still_serving(app, args, previous, failure):
            return amended(
                failure,
                f"rolled back: {var}={previous} restored, no redeploy needed: /health still "
                "serves it (the failed deploy never stopped it)",
            )
        deploy_and_verify(client, app, args, previous if FULL_SHA.fullmatch(previous) else None)
    except DeployError as again:
        return DeploymentFailed(
            f"{failure}; the rollback to {var}={previous} failed too: {again} "
            "(the site may be down: look at Coolify now)"
        )
    serving = " and /health serves it" if app is not None else ""
    return amended(failure, f"rolled back: {var}={previous} is deployed again{serving}")


def still_serving(
    app: Client | None,
    args: argparse.Namespace,
    previous: str,
    failure: DeploymentFailed | NothingDeployed,
) -> bool:
    """Whether the previous commit still answers /health after a failure that can no longer
    change what runs: an application's deployment that ended (a failed pull in the custom build
    command ends it before Coolify stops the old container) or that never started. A deployment
    still running, or a Service (started without a deployment to follow), may yet replace it."""
    over = isinstance(failure, NothingDeployed) or failure.ended
    if app is None or not over or args.kind != "application" or not FULL_SHA.fullmatch(previous):
        return False
    commit = live_commit(app)
    if commit is None or not same_commit(commit, previous):
        return False
    app.out.line(f"health: the previous commit {commit} still serves: no redeploy")
    return True


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    token = environ.get("COOLIFY_TOKEN", "").strip()
    secrets = [token, environ.get("REGISTRY_TOKEN", "").strip()]
    out = Output(secrets=secrets)
    err = Output(secrets=secrets, stream=sys.stderr)
    args = parse_args(sys.argv[1:] if argv is None else argv, environ)
    try:
        return run(args, token, out, environ)
    except DeployError as error:
        prefix = "::error title=Coolify deploy::" if environ.get("GITHUB_ACTIONS") else "error: "
        err.line(prefix + str(error))
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
