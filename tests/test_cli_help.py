"""Every command explains itself: help text with an example, and a fast, import-light status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from basis_live.cli import app
from conftest import BASIS_LIVE


COMMANDS = sorted(cmd.name or cmd.callback.__name__ for cmd in app.registered_commands)  # type: ignore[union-attr]


def test_the_expected_commands_exist() -> None:
    assert set(COMMANDS) >= {"start", "status", "metrics", "risk", "stop", "emergency-stop", "health",
                             "strategies", "validate", "orders"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    info = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == command)  # type: ignore[union-attr]
    doc = info.callback.__doc__ or ""  # type: ignore[union-attr]
    assert "Example: basis-live " in doc, f"{command} lacks an example in its help"
    result = subprocess.run([BASIS_LIVE, command, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "Example" in result.stdout


def test_status_and_health_do_not_import_exchange_chain_or_engine_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['basis-live', '{cmd}', '--db', r'{db}']\n"
        "try:\n    runpy.run_module('basis_live', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('ccxt', 'web3', 'yaml', 'basis_live.engine.engine', 'basis_live.config', 'basis_live.venues.paper') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    for command in ("status", "health"):
        result = subprocess.run([sys.executable, "-c", probe.format(cmd=command, db=tmp_path / "s.db")],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "HEAVY=", f"{command} imported {result.stdout}"


def test_usage_errors_are_one_line_with_lt_001_and_exit_2() -> None:
    for args in (["start"], ["status", "--bogus"], ["no-such-command"], ["stop"]):
        result = subprocess.run([BASIS_LIVE, *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error LT-001: ")
