"""Round trips on one Redis server without redis-py's per-call machinery.

A redis-py `Pipeline` builds a command stack, response callbacks and error wrapping for
every call: for the two or three commands of a read or a put it costs more CPU than
Redis spends on them. Here the commands go out packed in one write on a pooled connection
and their replies are read in order, as the pipeline would, with the same retry policy
(the connection's `Retry`: a lost connection is tried again on a new one) and the same
answer: replies in place, an error reply as the exception it maps to. Used on one server
only (a cluster's calls go through its own pipeline, which routes them by slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from .codec import text


class Direct:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pool = client.connection_pool

    async def run(
        self, commands: Sequence[Sequence[Any]], scripts: Sequence[AsyncScript | None]
    ) -> list[Any]:
        """Send `commands` (argument lists; an EVALSHA's sha is taken from its script in
        `scripts`, which is None for a plain command) and return their replies in place.
        A script Redis does not know yet (NOSCRIPT: it never ran) is loaded and its call
        sent again; the others are not repeated."""
        conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies = await self._retrying(conn, _packed(commands, scripts))
            again = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if again:
                for script in {id(scripts[n]): scripts[n] for n in again}.values():
                    assert script is not None
                    script.sha = text(await self._client.script_load(script.script))
                picked = [commands[n] for n in again]
                fixed = await self._retrying(conn, _packed(picked, [scripts[n] for n in again]))
                for n, reply in zip(again, fixed, strict=True):
                    replies[n] = reply
            return replies
        except BaseException:
            await conn.disconnect()  # a reply may be left unread on it
            raise
        finally:
            await self._pool.release(conn)

    async def _retrying(self, conn: AbstractConnection, commands: list[list[Any]]) -> list[Any]:
        async def exchange() -> list[Any]:
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # an answer: the next reply follows it
                    replies.append(exc)
            return replies

        async def failed(_: BaseException) -> None:
            await conn.disconnect()

        reply: list[Any] = await conn.retry.call_with_retry(exchange, failed)
        return reply


def _packed(
    commands: Sequence[Sequence[Any]], scripts: Sequence[AsyncScript | None]
) -> list[list[Any]]:
    out: list[list[Any]] = []
    for args, script in zip(commands, scripts, strict=True):
        if script is None:
            out.append(list(args))
        else:
            out.append(["EVALSHA", script.sha, *args])
    return out
