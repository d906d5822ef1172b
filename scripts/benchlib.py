"""What the benchmark scripts (``bench_spine``, ``bench_live``, ``bench_chain``) share: percentiles,
progress notes, a repeat budget, and timing of every public Store call. Each script is run directly
(``python scripts/bench_x.py``), which puts this folder on ``sys.path``."""

from __future__ import annotations

import math
import sys
import time
from typing import Any


class BenchFailure(Exception):
    """One repeat of a measurement went wrong (the message says how); the loop records it and goes on."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least q% of the samples at or below it
    (so with fewer than 100 samples p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Progress:
    """One-line progress notes on stderr, prefixed with the script's tag (silent with --json)."""

    def __init__(self, enabled: bool, tag: str) -> None:
        self.enabled = enabled
        self.tag = tag

    def __call__(self, message: str) -> None:
        if self.enabled:
            sys.stderr.write(f"[{self.tag}] {message}\n")
            sys.stderr.flush()


class Budget:
    """Bounds a repeat loop: ``more(done)`` is False once ``count`` repeats are done or the wall-time
    budget is spent (then ``exhausted`` is True)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.deadline = time.monotonic() + seconds
        self.exhausted = False

    def more(self, done: int) -> bool:
        if done >= self.count:
            return False
        if time.monotonic() >= self.deadline:
            self.exhausted = True
            return False
        return True


def time_store_calls(store: Any, spans: list, prefix: str = "") -> None:
    """Append ``(prefix + method, start, end)`` to ``spans`` for every public Store call on this
    instance, the outermost call only (a Store method calling another counts once)."""
    depth = [0]
    for name in dir(type(store)):
        attr = getattr(type(store), name)
        if name.startswith("_") or not callable(attr) or isinstance(attr, (classmethod, staticmethod)) \
                or name in ("open", "close"):
            continue
        original = getattr(store, name)

        def outermost(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            depth[0] += 1
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spans.append((prefix + _name, started, time.perf_counter()))

        setattr(store, name, outermost)
