"""Known-bad image hashes: an upload or fetch that matches is refused (451), never stored.

Hash lists come from files (one lowercase hex SHA-256 per line, `#` comments) named in
config, and from the ops API at run time. Lists live in memory only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import Blocklisted, InvalidParameter
from ..item import ImageFacts

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def normalise_sha256(value: object) -> str:
    """A lowercase hex SHA-256, or a 400 naming what was wrong."""
    if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value.strip().lower()):
        raise InvalidParameter("sha256 must be 64 hexadecimal characters")
    return value.strip().lower()


class Blocklist:
    def __init__(self, sha256: Iterable[str] = ()) -> None:
        self._sha256: set[str] = {normalise_sha256(h) for h in sha256}

    @classmethod
    def from_files(cls, sha256_files: Iterable[str]) -> Blocklist:
        hashes: list[str] = []
        for name in sha256_files:
            for number, line in enumerate(Path(name).read_text().splitlines(), 1):
                entry = line.split("#", 1)[0].strip()
                if not entry:
                    continue
                if not SHA256_PATTERN.fullmatch(entry.lower()):
                    raise ValueError(f"blocklist.sha256_files: {name}:{number} is not a SHA-256")
                hashes.append(entry.lower())
        return cls(hashes)

    def __len__(self) -> int:
        return len(self._sha256)

    def sha256_entries(self) -> list[str]:
        return sorted(self._sha256)

    def add(self, hashes: Iterable[str]) -> int:
        new = {normalise_sha256(h) for h in hashes} - self._sha256
        self._sha256 |= new
        return len(new)

    def remove(self, hashes: Iterable[str]) -> int:
        gone = {normalise_sha256(h) for h in hashes} & self._sha256
        self._sha256 -= gone
        return len(gone)

    def check(self, facts: ImageFacts) -> None:
        """Raise Blocklisted (451) when the image is on a list."""
        if facts.sha256 in self._sha256:
            raise Blocklisted("this image is on the operator's blocklist", kind="sha256")
