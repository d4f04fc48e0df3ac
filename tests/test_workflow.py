"""The GitHub Actions workflows: actionlint passes, and the properties the deploy relies on hold.

actionlint is looked up on PATH and next to the test interpreter (a wheel that ships the binary
installs it in the venv's bin). In CI (CI=true) a missing actionlint is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY_SCRIPT = ".github/scripts/coolify_deploy.py"


def _actionlint() -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("actionlint", path=path)
    if found is None:
        message = "actionlint not found (install the dev dependencies, or nixpkgs' actionlint)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _workflow(path: Path = CI) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def test_actionlint_passes():
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files, "no workflow files"
    result = subprocess.run(
        [_actionlint(), "-no-color", *map(str, files)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check is real: a typo'd key and an unknown expression are both reported."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    result = subprocess.run(
        [_actionlint(), "-no-color", str(broken)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert 'unexpected key "step"' in result.stdout


def test_triggers():
    on = _workflow()["on"]
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    assert on["push"]["tags"] == ["v*"]


def test_pull_requests_only_check():
    jobs = _workflow()["jobs"]
    assert "nix flake check" in " ".join(step.get("run", "") for step in _steps(jobs["check"]))
    assert "github.event_name == 'push'" in jobs["push"]["if"]
    assert jobs["deploy"]["needs"] == "push"
    assert "needs.push.result == 'success'" in jobs["deploy"]["if"]


def test_least_privilege_permissions():
    workflow = _workflow()
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        permissions = job.get("permissions", workflow["permissions"])
        assert isinstance(permissions, dict), f"{name}: permissions must be explicit"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == ({"packages"} if name == "push" else set()), name
    assert workflow["jobs"]["deploy"]["permissions"] == {"contents": "read", "packages": "read"}


def test_actions_are_pinned_by_commit():
    pattern = re.compile(r"^\s*-?\s*uses:\s*(?P<ref>\S+)(?P<comment>\s+#\s*v\S+)?\s*$")
    for path in WORKFLOWS.glob("*.y*ml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "uses:" not in line:
                continue
            match = pattern.match(line)
            assert match, f"{path.name}:{number}: unexpected uses line"
            ref = match["ref"]
            if ref.startswith("./"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}:{number}"
            assert match["comment"], f"{path.name}:{number}: say which version in a comment"


def test_deploys_never_overlap():
    deploy = _workflow()["jobs"]["deploy"]
    concurrency = deploy["concurrency"]
    assert concurrency["cancel-in-progress"] is False
    assert "${{" not in concurrency["group"], "one group for main and tags alike"


def test_nix_store_is_cached():
    jobs = _workflow()["jobs"]
    for name in ("check", "push"):
        uses = [step.get("uses", "") for step in _steps(jobs[name])]
        assert any(u.startswith("nix-community/cache-nix-action@") for u in uses), name


def test_push_tags_and_credentials():
    push = _workflow()["jobs"]["push"]
    steps = {step.get("name"): step for step in _steps(push)}
    tags = steps["Image name and tags"]["run"]
    assert '"$GITHUB_SHA"' in tags
    assert "latest" in tags
    assert "${GITHUB_REF_NAME#v}" in tags
    push_step = steps["Push to GHCR"]
    assert "nix run .#push --" in push_step["run"]
    assert push_step["env"]["REGISTRY_USER"] == "${{ github.actor }}"
    assert push_step["env"]["REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"


def test_deploy_runs_the_tested_script_with_secrets_from_env():
    deploy = _workflow()["jobs"]["deploy"]
    [step] = [step for step in _steps(deploy) if DEPLOY_SCRIPT in step.get("run", "")]
    assert {"COOLIFY_URL", "COOLIFY_TOKEN", "COOLIFY_APP_UUID", "APP_URL"} <= set(step["env"])
    assert step["env"]["COOLIFY_TOKEN"] == "${{ secrets.COOLIFY_TOKEN }}"
    assert "--expect-commit" in step["run"]
    assert (REPO_ROOT / DEPLOY_SCRIPT).is_file()


def test_no_expressions_inside_scripts():
    """Values reach `run:` through `env:`, so nothing is spliced into a shell script."""
    for name, job in _workflow()["jobs"].items():
        for step in _steps(job):
            assert "${{" not in step.get("run", ""), f"{name}: {step.get('name')}"


def test_checkout_does_not_keep_the_token():
    for name, job in _workflow()["jobs"].items():
        for step in _steps(job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_deploy_checks_the_pushed_image_in_the_registry_first():
    """The tag is looked up in the very image the push job pushed, for a push and a manual
    rollback alike (the same step runs both), with a login that may read packages."""
    jobs = _workflow()["jobs"]
    [step] = [s for s in _steps(jobs["deploy"]) if DEPLOY_SCRIPT in s.get("run", "")]
    pushed = re.search(r'image="([^"]+)"', _steps_by_name(jobs["push"])["Image name and tags"])
    deployed = re.search(r'image="([^"]+)"', step["run"])
    assert pushed
    assert deployed
    assert deployed[1] == pushed[1]
    assert '--image "$image"' in step["run"]
    assert '--image-tag "$COMMIT"' in step["run"]
    assert "--no-rollback" not in step["run"]
    assert step["env"]["REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert step["env"]["COMMIT"] == "${{ inputs.commit || github.sha }}"
    assert "workflow_dispatch" in jobs["deploy"]["if"]


def _steps_by_name(job: dict[str, Any]) -> dict[str, str]:
    return {step.get("name", ""): step.get("run", "") for step in _steps(job)}


def _deploy_script_args(run: str) -> list[str]:
    """The arguments the workflow gives the deploy script, shell variables as placeholders."""
    command = next(line for line in run.splitlines() if DEPLOY_SCRIPT in line)
    for line in run.splitlines()[run.splitlines().index(command) + 1 :]:
        command = command.rstrip("\\") + " " + line.strip()
        if not line.rstrip().endswith("\\"):
            break
    words = shlex.split(command.rstrip("\\"))
    return words[words.index(DEPLOY_SCRIPT) + 1 :]


def _parse_deploy_args(argv: list[str]) -> Any:
    spec = importlib.util.spec_from_file_location("coolify_deploy_args", REPO_ROOT / DEPLOY_SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.parse_args(argv, {})


def test_the_deploy_scripts_budget_ends_before_the_job_is_killed():
    """GitHub kills a job at its timeout-minutes, wherever it is: the deploy script's whole run
    (deploy, health check, rollback: its --budget, plus one request that may run past it) and
    the steps after it must end first, or a kill could leave IMAGE_TAG at a failed commit.
    The job's limit is read from ci.yml, the budget from the arguments the workflow passes."""
    job = _workflow()["jobs"]["deploy"]
    steps = _steps(job)
    [index] = [i for i, step in enumerate(steps) if DEPLOY_SCRIPT in step.get("run", "")]
    args = _parse_deploy_args(_deploy_script_args(steps[index]["run"]))
    assert args.budget > args.timeout + args.health_timeout, "no time left to deploy"
    after = steps[index + 1 :]
    assert all("timeout-minutes" in step for step in after), "every later step needs a limit"
    later = sum(step["timeout-minutes"] * 60 for step in after)
    setup = 60  # starting the job and the sparse checkout
    worst = setup + args.budget + args.request_timeout + later
    assert worst <= job["timeout-minutes"] * 60, (worst, job["timeout-minutes"])
