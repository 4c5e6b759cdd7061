"""Helpers for the G1 self-check tests (tests/proof/)."""

from __future__ import annotations

from typing import Any

from cache.config import Config, with_overrides
from cache.proof.guarantees import CheckResult


def checks_config(
    backend: str = "memory", path: str = "/dev/shm/query-cache", **guarantees: Any
) -> Config:
    """The default config with this storage backend and path and these `guarantees` keys."""
    return with_overrides(
        Config(), storage={"backend": backend, "path": path}, guarantees=guarantees
    )


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


# A mountinfo with a disk root, a tmpfs with a noswap tmpfs stacked on it, and a mount
# point whose name has an escaped space.
MOUNTS = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 27 0:27 / /srv/qc rw,relatime - tmpfs tmpfs rw,size=1g\n"
    "31 27 0:28 / /srv/qc rw,relatime - tmpfs tmpfs rw,size=1g,noswap\n"
    "32 27 0:29 / /srv/with\\040space rw - tmpfs tmpfs rw\n"
)
