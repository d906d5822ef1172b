"""Reading the operator's text files (strategies, manifests, data, networks, signals) as UTF-8, with a
one-line account of where a file is not."""

from __future__ import annotations

import codecs
from pathlib import Path


def read_utf8(path: Path) -> str:
    """The whole file as text (a UTF-8 byte-order mark dropped). Raises OSError, or
    UnicodeDecodeError whose ``object`` is the whole file (see ``not_utf8``)."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return data.decode("utf-8")


def not_utf8(exc: UnicodeDecodeError) -> str:
    """"not UTF-8 text (byte 0xff at line 3)" for a decode error of a whole file's bytes."""
    data = exc.object
    if isinstance(data, (bytes, bytearray)) and 0 <= exc.start < len(data):
        line = data.count(b"\n", 0, exc.start) + 1
        return f"not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line})"
    return "not UTF-8 text"
