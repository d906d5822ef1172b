"""The README's set-up commands and CI agree, and the docs name what the tool really does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", setup, flags=re.S)
    return [b.strip() for b in blocks if b.strip().startswith("python3 -m venv")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    commands = _setup_commands()
    assert len(commands) == 2
    run_job, run_tests = commands
    assert "basis-live start pure_lending" in run_job
    ci = (ROOT / ".ci" / "run").read_text()
    assert run_tests in ci.splitlines()


def test_every_shipped_strategy_is_mentioned_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in (ROOT / "strategies").glob("*.yaml"):
        assert f"`{path.stem}`" in readme
