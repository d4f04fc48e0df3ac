"""docs/your-app.md tells the truth about this repository (checked, not trusted): the paths,
modules, commands and variables it names exist, its links land, and the README links to it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from services import REPO, base_env
from working.runtime import app_settings
from working.runtime.contract import contract

DOC = REPO / "docs" / "your-app.md"
TEXT = DOC.read_text()

# What the guide names on purpose although it is not in the repository.
NOT_HERE = {
    "alembic/",  # Reflex's own migrations directory: named as unused
    "assets/",  # Reflex's assets directory: named as not reaching the export
}


def _code() -> list[str]:
    """Inline code spans and the lines of fenced code blocks."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", TEXT, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[a-z]*\n.*?^```$", "", TEXT, flags=re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return spans + [line for block in blocks for line in block.splitlines()]


def _words() -> set[str]:
    return {word.strip(",;:()") for code in _code() for word in code.split()}


def _is_path(word: str) -> bool:
    if not word or word in NOT_HERE or word.startswith(("/", ".", "http", "-", "$")):
        return False
    if "<" in word or "=" in word or "(" in word or '"' in word:
        return False
    return "/" in word or bool(re.fullmatch(r"[\w.-]+\.(py|md|toml|lock|yaml|json|mako)", word))


def _links() -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", TEXT)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def _exists(path: str) -> bool:
    """A path from the repository root; a bare name (`env.py`, `versions/`, in a sentence about
    its directory) at the root or anywhere in the package."""
    if (REPO / path).exists():
        return True
    name = path.rstrip("/")
    return "/" not in name and any((REPO / "working").rglob(name))


def test_every_path_it_names_exists() -> None:
    named = sorted(w for w in _words() if _is_path(w))
    assert "working/runtime/" in named  # the check reads what the guide says
    missing = [p for p in named if not _exists(p)]
    assert not missing, f"docs/your-app.md names paths that do not exist: {missing}"


def test_every_module_it_names_exists() -> None:
    modules = set(re.findall(r"\bworking(?:\.\w+)+", "\n".join(_code())))
    assert "working.runtime.migrations" in modules
    for dotted in sorted(modules):
        parts = dotted.split(".")
        # A module, or an attribute of one (`working.runtime.db.run`).
        found = any(
            (REPO.joinpath(*parts[:n]).with_suffix(".py")).is_file()
            or (REPO.joinpath(*parts[:n]) / "__init__.py").is_file()
            for n in (len(parts), len(parts) - 1)
        )
        assert found, f"docs/your-app.md names {dotted}, which is no module here"


def test_every_link_lands() -> None:
    for link in _links():
        if link.startswith("http"):
            continue
        target, _, anchor = link.partition("#")
        path = (DOC.parent / target).resolve() if target else DOC
        assert path.exists(), f"docs/your-app.md links to {link}: no such file"
        if anchor:
            assert path.suffix == ".md", link
            assert anchor in _anchors(path.read_text()), f"no heading for #{anchor} in {link}"


def _named_commands() -> set[str]:
    # `uv run working CMD` in a code block, or a span that starts with `working CMD`.
    found = (re.match(r"(?:uv run )?working ([a-z][a-z-]*)", code.strip()) for code in _code())
    return {m.group(1) for m in found if m}


def test_every_command_it_names_is_in_the_contract() -> None:
    named = _named_commands()
    assert {"lock-frontend", "build-frontend", "new-migration", "migrate"} <= named
    assert named <= set(contract()["entrypoint"]["commands"]), named


@pytest.mark.parametrize("command", sorted(_named_commands()))
def test_every_command_it_names_is_one_the_entrypoint_parses(command: str) -> None:
    """The entrypoint's own parser takes it (an unknown one: "invalid choice", exit 2)."""
    result = subprocess.run(
        [sys.executable, "-m", contract()["entrypoint"]["module"], command, "--help"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"usage: working {command}" in result.stdout


def _declared_in_examples() -> set[str]:
    """The names the guide's `toml` blocks declare: valid declarations of the app's own."""
    blocks = re.findall(r"^```toml\n(.*?)^```$", TEXT, flags=re.MULTILINE | re.DOTALL)
    # The settings.toml examples, not pyproject.toml's.
    settings = [block for block in blocks if block.lstrip().startswith("[env.")]
    assert settings, "the guide shows no settings.toml example"
    return {setting.name for block in settings for setting in app_settings.parse(block)}


def test_every_variable_it_names_is_in_the_contract() -> None:
    """The runtime's, the app's own (working/settings.toml), or declared in the guide's example."""
    env = set(contract()["env"]) | {setting.name for setting in app_settings.declared()}
    env |= _declared_in_examples()
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", TEXT))
    named |= {m.split("=")[0] for m in _code() if re.fullmatch(r"[A-Z][A-Z0-9_]*(=\S*)?", m)}
    assert {"PORT", "DATABASE_URL", "REDIS_URL", "ALLOWED_ORIGINS", "RUN_MIGRATIONS"} <= named
    assert named <= env, f"not in the contract: {sorted(named - env)}"


def test_the_readme_links_to_it() -> None:
    assert "](docs/your-app.md)" in (REPO / "README.md").read_text()


def test_its_rxconfig_example_is_the_repositorys() -> None:
    """The guide's rxconfig.py block is the one at the root (the app's one place for plugins)."""
    example = r"```python\n(import reflex as rx\n\nfrom working\.runtime.*?)```"
    block = re.search(example, TEXT, flags=re.DOTALL)
    assert block is not None
    assert block.group(1).strip() in (REPO / "rxconfig.py").read_text()
