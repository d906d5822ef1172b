"""ML trading signals: timestamp, signal (long | short | neutral), confidence, take_profit, stop_loss.

Sources: a CSV file with those columns, a JSON-lines file with those keys, or an http(s) URL that
answers a JSON list of such objects (fetched again at most once a candle). Malformed input is a
ConfigError naming the row.
"""

from __future__ import annotations

import csv
import json
import urllib.request
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from basis_live.errors import ConfigError
from basis_live.textfiles import not_utf8, read_utf8

Direction = Literal["long", "short", "neutral"]


@dataclass(frozen=True)
class Signal:
    timestamp: datetime
    signal: Direction
    confidence: float
    take_profit: float | None
    stop_loss: float | None


def _parse(row: dict[str, Any], where: str) -> Signal:
    try:
        ts = datetime.fromisoformat(str(row["timestamp"]).replace("Z", "+00:00"))
        signal = str(row["signal"]).strip().lower()
        if signal not in ("long", "short", "neutral"):
            raise ValueError(f"signal {row['signal']!r} is not long, short or neutral")
        confidence = float(row["confidence"])
        if not 0 <= confidence <= 1:
            raise ValueError(f"confidence {confidence} is not between 0 and 1")
        take_profit = float(row["take_profit"]) if row.get("take_profit") not in (None, "") else None
        stop_loss = float(row["stop_loss"]) if row.get("stop_loss") not in (None, "") else None
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"signals {where}: {exc}") from None
    return Signal(ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc), signal, confidence,  # type: ignore[arg-type]
                  take_profit, stop_loss)


def load_signals(source: str) -> list[Signal]:
    """All signals from a file or URL, oldest first."""
    if source.startswith(("http://", "https://")):
        from basis_live.config import redact_secrets

        shown = redact_secrets(source)  # a signals URL may carry an access token
        try:
            with urllib.request.urlopen(source, timeout=10) as response:  # noqa: S310 - operator-given URL
                body = response.read()
            rows = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"signals {shown}: the answer is not UTF-8 text") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"signals {shown}: cannot be read: {redact_secrets(str(exc))}") from None
        rows = rows if isinstance(rows, list) else [rows]
        signals = [_parse(row, f"{shown} item {n}") for n, row in enumerate(rows, 1)]
    else:
        path = Path(source).expanduser()
        try:
            text = read_utf8(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"signals file {path}: {not_utf8(exc)}; save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"signals file {path}: {exc.strerror or exc}") from None
        if path.suffix in (".jsonl", ".json"):
            signals = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        signals.append(_parse(json.loads(line), f"{path} line {n}"))
                    except json.JSONDecodeError:
                        raise ConfigError(f"signals {path} line {n}: not JSON") from None
        else:
            signals = [_parse(row, f"{path} line {n}") for n, row in enumerate(csv.DictReader(text.splitlines()), 2)]
    return sorted(signals, key=lambda s: s.timestamp)


class SignalBook:
    """The signals seen so far, and the one in force at a time."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.signals = load_signals(source)
        self._times = [s.timestamp for s in self.signals]

    def latest(self, ts: datetime) -> Signal | None:
        index = bisect_right(self._times, ts)
        return self.signals[index - 1] if index else None
