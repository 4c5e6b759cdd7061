"""What a guarantee check answers: a name, a status and a one-line reason.

Kept apart (no imports of its own) so that stores can report checks of their own (the
redis store: that Redis does not write to disk) without importing the G1 self-checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ok; fail; unknown (the platform cannot tell: never counted as ok); skipped (not done
# on purpose, with the reason).
Status = Literal["ok", "fail", "unknown", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "reason": self.reason}
