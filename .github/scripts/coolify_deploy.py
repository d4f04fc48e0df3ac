#!/usr/bin/env python3
"""Redeploy a Coolify resource and wait until the new version serves.

    COOLIFY_URL=https://coolify.example.com COOLIFY_TOKEN=... COOLIFY_APP_UUID=... \
      python3 .github/scripts/coolify_deploy.py --image-tag "$GITHUB_SHA" \
        --app-url https://app.example.com --expect-commit "$GITHUB_SHA"

Steps, each optional but the trigger:
1. `--image-tag`: set the resource's IMAGE_TAG variable (PATCH, or POST when it does not exist
   yet) so compose.yaml runs the immutable image of this commit.
2. Trigger: `POST /api/v1/deploy?uuid=<uuid>&force=false` (GET answers 405 since Coolify
   moved the endpoint to POST). The answer is `{"deployments": [{"message", "resource_uuid",
   "deployment_uuid"}]}`; a Service resource ("Docker Compose" without Git) gets no
   deployment_uuid, only a message.
3. Poll `GET /api/v1/deployments/<deployment_uuid>` until its status is `finished`, `failed` or
   `cancelled-by-user` (Coolify's ApplicationDeploymentStatus; `queued`/`in_progress` go on).
4. `--app-url`: poll `<app-url>/health` until it answers 200 with the expected `git_commit`.

HTTP: 429 (Coolify sends Retry-After when its deployment queue is full), 5xx and connection
errors are retried with bounded exponential backoff; other 4xx fail at once with one line.
The token is read from the environment only, sent only to COOLIFY_URL and never printed: every
line of output passes through `redact`.

Exit codes: 0 deployed (and verified); 1 the deployment failed, was cancelled, timed out or
serves another commit; 2 usage or configuration error; 3 the API refused the request or stayed
unreachable. Standard library only, so it runs on any runner with Python 3.11+.
"""

from __future__ import annotations

import argparse
import email.utils
import http.client
import json
import os
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
    exit_code = EXIT_DEPLOY_FAILED


class UsageError(DeployError):
    exit_code = EXIT_USAGE


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
            wait = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
            # The scheme was checked to be http(s) by http_url.
            request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
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
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _json(payload: bytes) -> Any:
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


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


def trigger_deploy(client: Client, uuid: str, *, force: bool = False) -> list[dict[str, Any]]:
    """POST /deploy; returns the `deployments` entries for this resource."""
    query = {"uuid": uuid, "force": "true" if force else "false"}
    _, data = client.request("POST", "/deploy", query=query)
    deployments = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise ApiError("POST", "/deploy", 200, f"unexpected answer: {json.dumps(data)[:200]}")
    for entry in deployments:
        client.out.line(f"coolify: {entry.get('message', '(no message)')}")
    return deployments


def wait_for_deployment(
    client: Client,
    deployment_uuid: str,
    *,
    timeout: float,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the deployment until it ends; returns its final status or raises DeploymentFailed."""
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
        if status in FAILED:
            raise DeploymentFailed(
                f"deployment {deployment_uuid} ended as {status}: "
                "read its log in Coolify (the resource's Deployments tab)"
            )
        if status not in PENDING:
            client.out.line(f"deployment {deployment_uuid}: unknown status {status!r}, waiting")
        if clock() >= deadline:
            raise DeploymentFailed(
                f"deployment {deployment_uuid} still {status} after {timeout:g}s; "
                "it may finish later: check Coolify before deploying again"
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
        if clock() >= deadline:
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
    parser.add_argument("--timeout", type=float, default=900, help="deployment timeout, s")
    parser.add_argument("--health-timeout", type=float, default=180, help="/health timeout, s")
    parser.add_argument("--poll-interval", type=float, default=5, help="s between polls")
    parser.add_argument("--request-timeout", type=float, default=30, help="per request, s")
    parser.add_argument("--attempts", type=int, default=5, help="tries per request (>= 1)")
    parser.add_argument("--backoff", type=float, default=2, help="first retry delay, s")
    args = parser.parse_args(argv)
    if args.attempts < 1:
        parser.error("--attempts must be at least 1")
    return args


def run(args: argparse.Namespace, token: str, out: Output) -> int:
    if not token:
        raise UsageError("COOLIFY_TOKEN is not set")
    if not args.url:
        raise UsageError("COOLIFY_URL is not set")
    if not args.uuid:
        raise UsageError("COOLIFY_APP_UUID is not set")
    if not args.app_url and not args.no_health_check:
        raise UsageError("APP_URL is not set: give --app-url, or --no-health-check to skip")

    client = Client(
        api_base(args.url),
        token,
        out,
        timeout=args.request_timeout,
        attempts=args.attempts,
        backoff=args.backoff,
    )
    if args.image_tag:
        set_variable(client, args.kind, args.uuid, args.tag_variable, args.image_tag)

    deployments = trigger_deploy(client, args.uuid, force=args.force)
    pending = [d["deployment_uuid"] for d in deployments if d.get("deployment_uuid")]
    if not pending and args.no_health_check:
        raise DeploymentFailed(
            "Coolify started the resource without a deployment to follow (a Service); "
            "only the /health check can confirm it: drop --no-health-check"
        )
    for deployment_uuid in pending:
        wait_for_deployment(
            client, deployment_uuid, timeout=args.timeout, interval=args.poll_interval
        )

    if not args.no_health_check:
        app = Client(
            http_url(args.app_url, "APP_URL"),
            None,
            out,
            timeout=min(args.request_timeout, 10),
            attempts=1,
            sleep=client.sleep,
        )
        data = wait_for_health(
            app, args.expect_commit, timeout=args.health_timeout, interval=args.poll_interval
        )
        out.line(f"live: {args.app_url} serves {data.get('git_commit')} ({data.get('version')})")
    else:
        out.line("deployed (no health check)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    token = environ.get("COOLIFY_TOKEN", "").strip()
    out = Output(secrets=[token])
    err = Output(secrets=[token], stream=sys.stderr)
    args = parse_args(sys.argv[1:] if argv is None else argv, environ)
    try:
        return run(args, token, out)
    except DeployError as error:
        prefix = "::error title=Coolify deploy::" if environ.get("GITHUB_ACTIONS") else "error: "
        err.line(prefix + str(error))
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
