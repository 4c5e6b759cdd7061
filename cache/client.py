"""An async client for the public and the ops APIs, for frontends, workers and scripts.

Every problem+json answer becomes a `ProblemError` carrying the stable `type` slug, so
callers branch on `error.slug == "cache-full"`, never on message text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, Self

import aiohttp

from .store.api import Receipt


class ProblemError(Exception):
    """An RFC 9457 answer from the service (or a non-JSON error, with slug `http-error`)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.slug = str(problem.get("type", "")).rsplit("/", 1)[-1] or "http-error"
        self.detail = str(problem.get("detail") or problem.get("title") or "")
        self.retry_after: float | None = problem.get("retry_after")
        super().__init__(f"{status} {self.slug}: {self.detail}")


@dataclass(frozen=True)
class StoredImage:
    id: str
    expires_at: float
    ttl: float
    sha256: str
    size: int
    media_type: str
    width: int
    height: int
    frames: int = 1
    reads_left: int | None = None
    source: str = "upload"


@dataclass(frozen=True)
class PurgeResult:
    purged: int
    receipts: list[Receipt]
    not_found: list[str]


@dataclass(frozen=True)
class GuaranteeCheck:
    check: str
    status: str
    ok: bool
    reason: str


def _known(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = headers or {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        async with self._client().request(
            method, self.base_url + path, headers=headers, **kwargs
        ) as response:
            body = await response.read()
            if response.status >= 400:
                try:
                    problem = json.loads(body)
                except ValueError:
                    problem = {"title": response.reason or "error"}
                if not isinstance(problem, dict):
                    problem = {"title": str(problem)}
                if "Retry-After" in response.headers:
                    problem.setdefault("retry_after", float(response.headers["Retry-After"]))
                raise ProblemError(response.status, problem)
            return response.status, body

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return json.loads((await self._request(method, path, **kwargs))[1])

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _lifetime(ttl: float | None, max_reads: int | None) -> dict[str, str]:
    params = {}
    if ttl is not None:
        params["ttl"] = str(ttl)
    if max_reads is not None:
        params["max_reads"] = str(max_reads)
    return params


class CacheClient(_Base):
    """The public listener: store, read, delete query images."""

    async def upload(
        self, data: bytes, *, ttl: float | None = None, max_reads: int | None = None
    ) -> StoredImage:
        body = await self._json("POST", "/v1/images", data=data, params=_lifetime(ttl, max_reads))
        return StoredImage(**_known(StoredImage, body))

    async def fetch_url(
        self, url: str, *, ttl: float | None = None, max_reads: int | None = None
    ) -> StoredImage:
        payload: dict[str, Any] = {"url": url, "ttl": ttl, "max_reads": max_reads}
        body = await self._json("POST", "/v1/images/fetch", json=payload)
        return StoredImage(**_known(StoredImage, body))

    async def read(self, item_id: str) -> bytes:
        return (await self._request("GET", f"/v1/images/{item_id}"))[1]

    async def thumbnail(self, item_id: str, size: int = 256) -> bytes:
        path = f"/v1/images/{item_id}/thumbnail"
        return (await self._request("GET", path, params={"size": str(size)}))[1]

    async def meta(self, item_id: str) -> dict[str, Any]:
        return dict(await self._json("GET", f"/v1/images/{item_id}/meta"))

    async def delete(self, item_id: str) -> None:
        await self._request("DELETE", f"/v1/images/{item_id}")


class OpsClient(_Base):
    """The ops listener: metrics, purge with receipts, listings, guarantees, blocklist."""

    def __init__(self, base_url: str, token: str | None = None, **kwargs: Any) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(base_url, headers=headers, **kwargs)

    async def metrics_text(self) -> str:
        return (await self._request("GET", "/metrics"))[1].decode()

    async def items(self, *, limit: int = 1000, sha256: str | None = None) -> list[dict[str, Any]]:
        params = {"limit": str(limit), **({"sha256": sha256} if sha256 else {})}
        return list((await self._json("GET", "/admin/items", params=params))["items"])

    async def _purge(self, selector: dict[str, Any]) -> PurgeResult:
        body = await self._json("POST", "/admin/purge", json=selector)
        receipts = [Receipt(**_known(Receipt, r)) for r in body["receipts"]]
        return PurgeResult(body["purged"], receipts, list(body.get("not_found", [])))

    async def purge_ids(self, ids: list[str]) -> PurgeResult:
        return await self._purge({"ids": ids})

    async def purge_sha256(self, sha256: str) -> PurgeResult:
        return await self._purge({"sha256": sha256})

    async def purge_all(self) -> PurgeResult:
        return await self._purge({"all": True})

    async def guarantees(self) -> list[GuaranteeCheck]:
        body = await self._json("GET", "/admin/guarantees")
        return [GuaranteeCheck(**_known(GuaranteeCheck, check)) for check in body["checks"]]

    async def blocklist(self) -> list[str]:
        return list((await self._json("GET", "/admin/blocklist"))["sha256"])

    async def blocklist_add(self, hashes: list[str]) -> PurgeResult:
        return await self._purge_via("POST", hashes)

    async def blocklist_remove(self, hashes: list[str]) -> int:
        return int(
            (await self._json("DELETE", "/admin/blocklist", json={"sha256": hashes}))["removed"]
        )

    async def _purge_via(self, method: str, hashes: list[str]) -> PurgeResult:
        body = await self._json(method, "/admin/blocklist", json={"sha256": hashes})
        receipts = [Receipt(**_known(Receipt, r)) for r in body["receipts"]]
        return PurgeResult(body["purged"], receipts, [])
