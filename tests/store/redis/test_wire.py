"""The request path's shared connection (`wire.Wire`) against real redis-servers: replies go
to the calls that wrote them, failures fail every waiting call and the next one connects
again, a silent server times out, scripts are loaded on NOSCRIPT, AUTH and SELECT."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache.store.redis.wire import Wire, pack, wire_for
from tests.support.redisproc import RedisFactory, RedisServer, flush


def wire_to(server: RedisServer, timeout: float = 2.0, **extra: object) -> Wire:
    return Wire({"host": "127.0.0.1", "port": server.port, **extra}, timeout)


async def test_concurrent_calls_each_get_their_own_replies(redis_server: RedisServer) -> None:
    flush(redis_server)
    wire = wire_to(redis_server)
    values = {f"k{n}": os.urandom(n * 997 % 300_000) for n in range(200)}  # up to ~300 KB

    async def roundtrip(key: str, value: bytes) -> list[object]:
        return await wire.call([["SET", key, memoryview(value)], ["GET", key], ["STRLEN", key]])

    results = await asyncio.gather(*(roundtrip(k, v) for k, v in values.items()))
    for (key, value), (ok, got, length) in zip(values.items(), results, strict=True):
        assert ok == b"OK" and got == value and length == len(value), key
    await wire.close()


async def test_the_calls_of_one_loop_pass_go_in_one_write(redis_server: RedisServer) -> None:
    """Under load one system call (and one read in Redis) carries many requests' commands;
    the replies still go to the calls that wrote them, in order."""
    flush(redis_server)
    wire = wire_to(redis_server)
    await wire.call([["PING"]])
    line = wire._line
    assert line is not None and line.transport is not None
    writes: list[int] = []
    real = line.transport.writelines

    def counted(parts: list[bytes | memoryview]) -> None:
        writes.append(len(parts))
        real(parts)

    line.transport.writelines = counted  # type: ignore[method-assign]
    replies = await asyncio.gather(*(wire.call([["INCR", "n"], ["GET", "n"]]) for _ in range(20)))
    assert [r[0] for r in replies] == list(range(1, 21))  # each call its own replies, in order
    assert [r[1] for r in replies] == [str(n).encode() for n in range(1, 21)]
    assert len(writes) == 1
    assert await wire.call([["GET", "n"]]) == [b"20"] and len(writes) == 2
    await wire.close()


async def test_an_error_reply_is_in_place_and_the_line_goes_on(redis_server: RedisServer) -> None:
    wire = wire_to(redis_server)
    replies = await wire.call([["SET", "w", "1"], ["HGET", "w", "x"], ["GET", "w"]])
    assert replies[0] == b"OK" and replies[2] == b"1"
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    await wire.close()


async def test_a_lost_connection_fails_the_waiting_calls_then_reconnects(
    make_redis: RedisFactory,
) -> None:
    server = make_redis()
    wire = wire_to(server)
    await wire.call([["PING"]])
    slow = asyncio.ensure_future(wire.call([["BLPOP", "nothing", "5"]]))
    await asyncio.sleep(0.1)
    admin = aioredis.Redis(port=server.port)
    await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    with pytest.raises(RedisConnectionError):
        await slow
    assert await wire.call([["PING"]]) == [b"PONG"]  # a new connection
    await admin.aclose()
    await wire.close()


async def test_a_server_that_is_gone_is_a_connection_error(make_redis: RedisFactory) -> None:
    server = make_redis()
    wire = wire_to(server)
    await wire.call([["PING"]])
    server.stop()
    with pytest.raises(RedisConnectionError):
        await wire.call([["PING"]])
    with pytest.raises(RedisConnectionError):  # and connecting again fails the same way
        await wire.call([["PING"]])


async def test_a_silent_server_times_out_every_waiting_call() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)  # reads, never answers
        await asyncio.sleep(5)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    wire = Wire({"host": "127.0.0.1", "port": port}, timeout=0.2)
    started = time.monotonic()
    calls = [asyncio.ensure_future(wire.call([["PING"]])) for _ in range(3)]
    for call in calls:
        with pytest.raises(RedisTimeoutError):
            await call
    assert time.monotonic() - started < 2  # bounded by the timeout, not by the server
    listener.close()


async def test_scripts_are_loaded_on_noscript(redis_server: RedisServer) -> None:
    client = aioredis.Redis(port=redis_server.port)
    script = client.register_script("return {KEYS[1], ARGV[1]}")
    wire = wire_to(redis_server)
    await wire.call([["SCRIPT", "FLUSH"]])
    replies = await wire.run([["GET", "nothing"], [1, "k", "v"]], [None, script])
    assert replies == [None, [b"k", b"v"]]
    await client.aclose()
    await wire.close()


async def test_auth_and_select_from_the_client_settings(make_redis: RedisFactory) -> None:
    server = make_redis()
    server.cli("config", "set", "requirepass", "s3cret")
    client = aioredis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{server.port}/3")
    wire = wire_for(client)
    assert wire is not None
    await wire.call([["SET", "in3", "yes"]])
    assert await client.get("in3") == b"yes"  # the same database 3
    await wire.close()
    with pytest.raises(ResponseError):  # a wrong password: refused, said so
        await Wire({"host": "127.0.0.1", "port": server.port, "password": "no"}).call([["PING"]])
    await client.aclose()


def test_tls_is_left_to_redis_py() -> None:
    assert wire_for(aioredis.Redis.from_url("rediss://127.0.0.1:1/0")) is None


def test_arguments_are_encoded_as_redis_py_encodes_them() -> None:
    packed = b"".join(bytes(p) for p in pack([["X", "é", 7, 0.25, bytearray(b"ab")]]))
    head = b"*5\r\n$1\r\nX\r\n$2\r\n\xc3\xa9\r\n$1\r\n7\r\n"
    assert packed == head + b"$4\r\n0.25\r\n$2\r\nab\r\n"


def test_large_arguments_are_not_copied_into_the_packet() -> None:
    big = memoryview(bytes(100_000))
    parts = pack([["SET", "k", big, "PX", 5]])
    assert any(part is big for part in parts)
    head = b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n"
    tail = b"\r\n$2\r\nPX\r\n$1\r\n5\r\n"
    assert b"".join(bytes(p) for p in parts) == head + bytes(100_000) + tail
