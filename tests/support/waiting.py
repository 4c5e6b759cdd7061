"""Polling for things that happen in real time (real servers, real deadlines)."""

from __future__ import annotations

import time
from typing import Any


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Call `check()` every 0.1 s until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
