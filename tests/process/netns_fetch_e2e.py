"""Run inside a fresh network namespace (only `lo`): the whole service refuses the corpus.

Started by tests/process/test_fetch_netns.py as `unshare -n sh -c 'ip link set lo up; python
-m tests.process.netns_fetch_e2e'`. In here a policy bug can only ever meet "network unreachable".
Prints one JSON summary line; exit 0 when every URL got its expected refusal.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from typing import Any

from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry

from cache.app import build_runtime, create_public_app
from cache.config import build_config
from cache.http.problems import problem_of
from tests.support import images
from tests.support.fetch_corpus import all_refused


class CorpusResolver:
    """DNS answers per host from the corpus; a rebinding name answers loopback the 2nd time."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: dict[str, int] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls[host] = self.calls.get(host, 0) + 1
        if host == "rebind.attacker.example":
            return ["1.1.1.1"] if self.calls[host] == 1 else ["127.0.0.1"]
        if host not in self.answers:
            raise OSError("no such name in the corpus")
        return self.answers[host]


async def main() -> int:
    accepted: list[object] = []

    async def sentinel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    sentinel_server = await asyncio.start_server(sentinel, "127.0.0.1", 0)
    port = sentinel_server.sockets[0].getsockname()[1]

    async def good_image(request: web.Request) -> web.Response:
        return web.Response(body=images.png(), content_type="image/png")

    origin_app = web.Application()
    origin_app.router.add_get("/ok.png", good_image)
    origin = web.AppRunner(origin_app)
    await origin.setup()
    origin_site = web.TCPSite(origin, "127.0.0.1", 0)
    await origin_site.start()
    origin_port = origin_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    cases = [
        (group, entry, entry.url.replace("{port}", str(port))) for group, entry in all_refused()
    ]
    cases.append(("rebinding", None, f"http://rebind.attacker.example:{port}/i.png"))
    resolver = CorpusResolver(
        {
            entry.url.replace("{port}", str(port))
            .split("//", 1)[1]
            .split("/")[0]
            .split(":")[0]: list(entry.answers)
            for _, entry, _ in cases
            if entry is not None and entry.answers
        }
    )
    config = build_config(
        {"fetch": {"ports": [80, 443, port], "allow_hosts": [f"127.0.0.1:{origin_port}"]}}, env={}
    )
    rt = build_runtime(
        config, registry=CollectorRegistry(), audit_stream=io.StringIO(), resolver=resolver
    )
    runner = web.AppRunner(create_public_app(rt))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    wrong: list[dict[str, Any]] = []
    async with ClientSession() as session:
        for group, entry, url in cases:
            async with session.post(base + "/v1/images/fetch", json={"url": url}) as response:
                expected = {403, 502} if entry is None else {problem_of(entry.error).status}
                problem = await response.json()
                detail = str(problem.get("detail", ""))
                # The client's own literal may be named; an address DNS gave us never is.
                answers = ["127.0.0.1"] if entry is None else list(entry.answers)
                leaked = any(address in detail for address in answers) or "?" in detail
                if response.status not in expected or leaked:
                    wrong.append({"group": group, "url": url, "status": response.status})
        async with session.post(
            base + "/v1/images/fetch", json={"url": f"http://127.0.0.1:{origin_port}/ok.png"}
        ) as control:
            control_status = control.status
    await runner.cleanup()
    await origin.cleanup()
    sentinel_server.close()
    summary = {
        "refused_tested": len(cases),
        "wrong": wrong,
        "sentinel_connections": len(accepted),
        "control_status": control_status,
    }
    print(json.dumps(summary))
    return 0 if not wrong and not accepted and control_status == 201 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
