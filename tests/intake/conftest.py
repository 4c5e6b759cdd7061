"""Fixtures for the fetch tests: the network guard and the loopback sentinel listener."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.fetch_support import NetGuard, Sentinel, install_net_guard, sentinel_listener


@pytest.fixture
def net_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetGuard]:
    """Refuse and record every non-loopback connect or lookup for the whole test."""
    guard = install_net_guard(monkeypatch)
    yield guard
    if not guard.expect_blocked:
        assert guard.blocked == [], "a non-loopback connect or lookup was attempted"


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    """A raw listener on 127.0.0.1 that records (and drops) any connection it accepts."""
    async with sentinel_listener() as record:
        yield record
