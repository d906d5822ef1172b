"""CSV files as the market-data exports come: an optional byte-order mark, ``#`` comment lines and blank
lines anywhere, a header row. Shared by the replay series and the seasonal-rewards table."""

from __future__ import annotations

import csv
from pathlib import Path

from basis_live.feeds.base import FeedError


def read_commented_csv(path: Path, what: str) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, data rows, each row's line number in the file). ``what`` names the file's use in the
    one-line FeedError for a missing, unreadable or empty file (e.g. "series spot.ETH")."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            numbered = [(n, line) for n, line in enumerate(handle, start=1)
                        if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        raise FeedError(f"{what}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedError(f"{what}: cannot read {path}: {exc}") from None
    if not numbered:
        raise FeedError(f"{what}: {path} has no header and no data")
    parsed = list(csv.reader(line for _, line in numbered))
    return [column.strip() for column in parsed[0]], parsed[1:], [n for n, _ in numbered[1:]]
