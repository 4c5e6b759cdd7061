"""The references for the lifecycle bench: the same three routes with nothing in between.

`python -m bench.bare_server --port P` keeps bytes in a dict (no validation, no audit, no
metrics: the ceiling for aiohttp on this machine); `--redis URL` keeps them in Redis with
SET PX / GET / DEL through redis-py asyncio (what "Redis with a TTL" behind aiohttp costs).
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

TTL_MS = 60_000
MAX_BODY = 32 * 1024 * 1024


class Holder(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def delete(self, key: str) -> bool: ...
    async def close(self) -> None: ...


class DictHolder:
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes) -> None:
        self._data[key] = data

    async def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    async def close(self) -> None:
        self._data.clear()


class RedisHolder:
    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, max_connections=256)

    async def put(self, key: str, data: bytes) -> None:
        await self._redis.set("bare:" + key, data, px=TTL_MS)

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get("bare:" + key)
        return value if isinstance(value, bytes) else None

    async def delete(self, key: str) -> bool:
        return bool(await self._redis.delete("bare:" + key))

    async def close(self) -> None:
        await self._redis.aclose()


HOLDER = web.AppKey("holder", Holder)


async def upload(request: web.Request) -> web.Response:
    data = await request.read()
    key = secrets.token_urlsafe(16)
    await request.app[HOLDER].put(key, data)
    return web.json_response({"id": key, "size": len(data)}, status=201)


async def read(request: web.Request) -> web.Response:
    data = await request.app[HOLDER].get(request.match_info["id"])
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type="application/octet-stream")


async def delete(request: web.Request) -> web.Response:
    if not await request.app[HOLDER].delete(request.match_info["id"]):
        raise web.HTTPNotFound()
    return web.Response(status=204)


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def create_app(redis_url: str | None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    holder: Holder = RedisHolder(redis_url) if redis_url else DictHolder()
    app[HOLDER] = holder

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[HOLDER].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/images", upload)
    app.router.add_get("/v1/images/{id}", read)
    app.router.add_delete("/v1/images/{id}", delete)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", help="redis:// URL: keep bytes in Redis instead of a dict")
    args = parser.parse_args()
    web.run_app(create_app(args.redis), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
