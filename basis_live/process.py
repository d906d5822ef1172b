"""Who runs an engine: pid, host and process start time, so other processes can tell a live engine
from a dead one (and from an unrelated process that reused the pid)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def hostname() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after the closing paren are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X")


def process_alive(pid: int | None, host: str | None, start: str | None) -> bool | None:
    """True/False for a process on this host; None when it runs on another host (cannot tell)."""
    if pid is None:
        return False
    if host and host != hostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _is_zombie(pid):
        return False
    if start is not None:
        current = process_start(pid)
        if current is not None and current != start:
            return False  # the pid was reused by another process
    return True
