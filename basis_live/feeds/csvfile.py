"""CSV files as the market-data exports come: an optional byte-order mark, ``#`` comment lines and blank
lines anywhere, a header row. Shared by the replay series and the seasonal-rewards table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from basis_live.feeds.base import FeedError
from basis_live.textfiles import not_utf8, read_utf8


def read_commented_csv(path: Path, what: str) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, data rows, each row's line number in the file). ``what`` names the file's use in the
    one-line FeedError for a missing, unreadable, non-UTF-8 or empty file (e.g. "series spot.ETH")."""
    try:
        text = read_utf8(path)
    except FileNotFoundError:
        raise FeedError(f"{what}: file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise FeedError(f"{what}: {path} is {not_utf8(exc)}; save it as UTF-8") from None
    except OSError as exc:
        raise FeedError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    # newline="" keeps line endings as they are, as csv.reader expects (quoted fields may hold them).
    numbered = [(n, line) for n, line in enumerate(io.StringIO(text, newline=""), start=1)
                if line.strip() and not line.startswith("#")]
    if not numbered:
        raise FeedError(f"{what}: {path} has no header and no data")
    parsed = list(csv.reader(line for _, line in numbered))
    return [column.strip() for column in parsed[0]], parsed[1:], [n for n, _ in numbered[1:]]
