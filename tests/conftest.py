"""Shared fixtures. Every test gets its own state and config directories: no test touches a real
~/.local/state or ~/.config, and no test reaches the network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

# The chain tests' anvil node and Aave market, shared by every test file that asks for them.
from chain.fixtures import anvil_node, deployed_market, market  # noqa: F401

#: The installed console script, next to the interpreter running the tests.
BASIS_LIVE = str(Path(sys.executable).with_name("basis-live"))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("BASIS_LIVE_DB", raising=False)
    monkeypatch.delenv("BASIS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("BASIS_EXECUTION_MODE", raising=False)
    return tmp_path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


class Cli:
    """Runs the installed ``basis-live`` script in subprocesses against one state database."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.engines: list[subprocess.Popen[str]] = []

    def run(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "BASIS_LIVE_DB": str(self.db), **(env or {})}
        return subprocess.run([BASIS_LIVE, *args], capture_output=True, text=True, timeout=timeout, env=full_env)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen([BASIS_LIVE, "start", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "BASIS_LIVE_DB": str(self.db), **(env or {})})
        self.engines.append(proc)
        return proc

    def start_command(self, *args: str) -> subprocess.Popen[str]:
        """Any long-running command (e.g. a backtest) in the background; stdout and stderr apart."""
        proc = subprocess.Popen([BASIS_LIVE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "BASIS_LIVE_DB": str(self.db)})
        self.engines.append(proc)
        return proc

    def status(self) -> list[dict[str, Any]]:
        result = self.run("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_running(self, proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            if proc.poll() is not None:
                pytest.fail(f"engine exited early ({proc.returncode}): {proc.stdout.read() if proc.stdout else ''}")
            if not self.db.exists():
                return None
            rows = [r for r in self.status() if r["pid"] == proc.pid and r["status"] == "running"]
            return rows[0] if rows and rows[0]["last_heartbeat"] else None

        return wait_for(running, timeout)

    def cleanup(self) -> None:
        for proc in self.engines:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def cli(db_path: Path):
    runner = Cli(db_path)
    yield runner
    runner.cleanup()
