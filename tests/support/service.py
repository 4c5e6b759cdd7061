"""The in-process service the `make_service` / `service` fixtures build, and its helpers."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cache.clock import ManualClock
from cache.config import Config, build_config
from cache.runtime import Runtime

ADMIN_TOKEN = "test-admin-token-0123456789"


def make_config(**sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {"ops": {"admin_token": ADMIN_TOKEN}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(data, env={})


class AuditCapture(io.StringIO):
    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.getvalue().splitlines() if line]
        return [e for e in lines if event is None or e["event"] == event]


class Service:
    """A runtime plus HTTP clients for both listeners, on one manual clock."""

    def __init__(
        self,
        rt: Runtime,
        client: TestClient[Any, Any],
        ops: TestClient[Any, Any],
        audit: AuditCapture,
        clock: ManualClock,
    ) -> None:
        self.rt, self.client, self.ops, self.audit, self.clock = rt, client, ops, audit, clock

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def upload(self, data: bytes, **query: Any) -> Any:
        return await self.client.post("/v1/images", data=data, params=query)

    async def upload_ok(self, data: bytes, **query: Any) -> dict[str, Any]:
        response = await self.upload(data, **query)
        assert response.status == 201, await response.text()
        return dict(await response.json())

    async def advance(self, seconds: float) -> None:
        """Move the clock and run the purge the exact timer would run at that moment."""
        self.clock.advance(seconds)
        await self.rt.timer.run_due()

    async def metrics(self) -> dict[str, float]:
        response = await self.ops.get("/metrics")
        return parse_metrics(await response.text())


def parse_metrics(text: str) -> dict[str, float]:
    """`name{a="b"}` -> value, from a real scrape parsed by prometheus_client."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


ServiceFactory = Callable[..., Awaitable[Service]]
