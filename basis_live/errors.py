"""The error hierarchy. Each class carries the spec's LT code, a severity and the CLI exit status.

The CLI turns any ``BasisLiveError`` into one line ``error LT-00x: <message>`` and its exit status;
anything else is a bug and keeps its traceback. Docstrings say what the operator should do.
"""

from __future__ import annotations

#: Exit statuses of the CLI (documented in the README).
EXIT_OK = 0
EXIT_FAILURE = 1  # an operational failure: unhealthy run, stop timed out, venue failure
EXIT_USAGE = 2  # bad input: nothing was started or written
EXIT_HALTED = 3  # the run ended in an emergency stop (risk watchdog or operator)


class BasisLiveError(Exception):
    """Base class. ``code`` is the spec's error code, ``severity`` its severity."""

    code = "LT-000"
    severity = "HIGH"
    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self.args[0])

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


class RequestValidationError(BasisLiveError):
    """LT-001: the request is invalid (capital, share class, run id, option value, environment).
    Fix the command line or environment and run it again; nothing was started."""

    code = "LT-001"
    severity = "HIGH"
    exit_code = EXIT_USAGE


class ConfigError(BasisLiveError):
    """LT-002: the strategy configuration could not be built (unknown strategy, malformed YAML,
    unknown or invalid key, inconsistent values). Fix the strategy file or the --set/--risk values."""

    code = "LT-002"
    severity = "HIGH"
    exit_code = EXIT_USAGE


class EngineInitError(BasisLiveError):
    """LT-003: the engine could not be initialised (mode not implemented yet, state database not
    writable, feed data unusable). Nothing traded; fix the cause named in the message."""

    code = "LT-003"
    severity = "CRITICAL"
    exit_code = EXIT_USAGE


class ExecutionError(BasisLiveError):
    """LT-004: live trading execution failed (a venue refused or failed repeatedly). The engine
    halts new orders; check the venue and the orders table before restarting."""

    code = "LT-004"
    severity = "CRITICAL"
    exit_code = EXIT_FAILURE


class MonitoringError(BasisLiveError):
    """LT-005: monitoring failed (state unreadable, heartbeat stale, engine process gone). Check the
    engine process; a dead engine leaves positions on the venues unattended."""

    code = "LT-005"
    severity = "MEDIUM"
    exit_code = EXIT_FAILURE


class StopError(BasisLiveError):
    """LT-006: a stop could not be confirmed (no acknowledgement in time, or the engine is gone).
    Retry, or use emergency-stop; if the process is hung, kill it and check the venues by hand."""

    code = "LT-006"
    severity = "MEDIUM"
    exit_code = EXIT_FAILURE


class RiskCheckError(BasisLiveError):
    """LT-007: the risk check could not be completed (no snapshot yet, unreadable state). Treat the
    run as unmonitored until it passes."""

    code = "LT-007"
    severity = "HIGH"
    exit_code = EXIT_FAILURE
