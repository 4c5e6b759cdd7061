"""Numbers a client sends (query strings, JSON fields), read strictly.

Python's `int()` and `float()` read `1_0` as 10 and U+0665 (an Arabic-Indic digit) as 5, and a
5,000-digit string costs real time: a query integer here is ASCII digits only (and one `.`
for a number such as `ttl`), at most 15 of them; anything else is a 400 naming the
parameter. A JSON field is a JSON number of the right kind (or a string read as above).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..config import TtlConfig
from ..errors import InvalidParameter

MAX_READS_CAP = 1_000_000
_INTEGER = re.compile(r"[0-9]{1,15}")
_DECIMAL = re.compile(r"[0-9]{1,15}(?:\.[0-9]{0,9})?|\.[0-9]{1,9}")


def integer(name: str, raw: Any) -> int:
    """`raw` as an integer: ASCII digits, or a JSON integer; else a 400 naming `name`."""
    if isinstance(raw, str) and _INTEGER.fullmatch(raw):
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise InvalidParameter(f"{name} must be an integer in ASCII digits")


def number(name: str, raw: Any) -> float:
    """`raw` as a finite number: ASCII digits with at most one `.`, or a JSON number."""
    if isinstance(raw, str) and _DECIMAL.fullmatch(raw):
        return float(raw)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    raise InvalidParameter(f"{name} must be a number in ASCII digits (one '.' at most)")


def parse_lifetime(params: Mapping[str, Any], ttl: TtlConfig) -> tuple[float, int | None]:
    """`ttl` in seconds (1 .. ttl.max) and `max_reads` (1 .. 1e6), each 400 when malformed
    or out of bounds."""
    raw_ttl = params.get("ttl")
    value = ttl.default if raw_ttl in (None, "") else number("ttl", raw_ttl)
    if value < 1 or value > ttl.max:
        raise InvalidParameter(
            f"ttl must be between 1 and ttl.max ({ttl.max:g}) seconds", bound=ttl.max
        )
    max_reads: int | None = None
    if params.get("max_reads") not in (None, ""):
        max_reads = integer("max_reads", params["max_reads"])
        if not 1 <= max_reads <= MAX_READS_CAP:
            raise InvalidParameter(f"max_reads must be between 1 and {MAX_READS_CAP}")
    return value, max_reads
