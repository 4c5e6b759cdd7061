"""An item's header (`codec.header` / `codec.parse`) and a split argument on the wire."""

from __future__ import annotations

import hiredis
import pytest

from cache.store.redis.codec import HEADER_MAX, header, parse
from cache.store.redis.wire import Joined, pack

FIELDS = {
    "sha256": "ab" * 32,
    "size": "5",
    "media_type": "image/png",
    "created_ms": "1700000000000",
    "deadline_ms": "1700000030000",
    "reads": "3",
    "source_host": "example.org",
}


def test_a_header_reads_back_with_its_count_and_where_the_bytes_start() -> None:
    head = header(FIELDS)
    assert head.startswith(b"\0\0\0\3sha256=" + b"ab" * 32 + b"\tsize=5\tcreated_ms=")
    fields, start = parse(head + b"HELLO")
    assert fields == FIELDS and start == len(head)
    assert parse(head[:HEADER_MAX] + b"x" * 10)[0] == FIELDS  # a GETRANGE of the start


@pytest.mark.parametrize(
    "value", [None, b"", b"\0\0\0\1", b"\0\0\0\1\n", b"\0\0\0\0size=1\n", "text", b"\0" * 2000]
)
def test_what_is_not_an_item_value_parses_to_nothing(value: object) -> None:
    assert parse(value) == ({}, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("source_host", "a\tb"), ("media_type", "x\ny"), ("source_host", "h" * 1100)],
)
def test_a_header_that_could_not_be_read_back_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        header({**FIELDS, field: value})


def test_a_joined_argument_is_sent_as_its_parts_and_reads_as_one() -> None:
    body = memoryview(bytearray(b"y" * 10_000))
    parts = pack([["SET", "k", Joined((b"head", body)), "PX", 5]])
    assert any(p is body for p in parts)  # passed on, not copied
    reader = hiredis.Reader()
    wire = b"".join(bytes(p) for p in parts)
    assert wire == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$10004\r\nhead" + b"y" * 10_000 + (
        b"\r\n$2\r\nPX\r\n$1\r\n5\r\n"
    )
    reader.feed(b"+OK\r\n")
    assert reader.gets() == b"OK"
