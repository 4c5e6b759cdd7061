"""What every bench of one run shares: its sizes, a scratch folder, a seed, and the facts
found once (does this version have a redis backend?)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from .procs import BackendNotBuilt, Procs, start_redis, start_service
from .sizes import Sizes


@dataclass
class Ctx:
    sizes: Sizes
    scratch: Path
    seed: int = 20211
    _redis_backend: tuple[bool, str] | None = field(default=None, repr=False)

    def rng(self, salt: str) -> random.Random:
        return random.Random(f"{self.seed}:{salt}")

    def procs(self) -> Procs:
        return Procs(self.scratch)

    def redis_backend(self) -> tuple[bool, str]:
        """(built, why): start server.py with storage.backend=redis against a real Redis."""
        if self._redis_backend is None:
            with self.procs() as procs:
                redis = start_redis(procs)
                url = f"redis://127.0.0.1:{redis.ports['port']}/0"
                try:
                    service = start_service(
                        procs,
                        {"CACHE_STORAGE_BACKEND": "redis", "CACHE_STORAGE_REDIS_URL": url},
                        cpu=None,
                        name="service-redis-probe",
                    )
                except BackendNotBuilt as exc:
                    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "not built"
                    self._redis_backend = (False, reason)
                else:
                    procs.stop(service.proc)
                    self._redis_backend = (True, "started with storage.backend=redis")
        return self._redis_backend
