"""Everything one service instance runs on, built once by the app factory.

Kept apart from app.py so route modules can name these types without importing the
factory that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .clock import Clock
from .config import Config
from .intake.admission import Intake
from .intake.blocklist import Blocklist
from .intake.blocklist_ops import BlocklistOps
from .intake.thumbnail import Thumbnails
from .intake.work import WorkPool
from .proof.audit import AuditLog
from .proof.guarantees import Guarantees
from .proof.metrics import Metrics
from .store.api import ItemStore
from .store.expiry import ExpiryTimer, Scheduler, Sweeper


@dataclass
class Runtime:
    config: Config
    clock: Clock
    metrics: Metrics
    audit: AuditLog
    store: ItemStore
    intake: Intake
    blocklist: Blocklist
    lists: BlocklistOps  # reload, admin add/remove, purge by hash, shared entries
    work: WorkPool
    thumbnails: Thumbnails
    guarantees: Guarantees
    timer: ExpiryTimer
    sweeper: Sweeper
    scheduler: Scheduler
    ready: bool = False
    not_ready_reason: str = "starting"


RUNTIME = web.AppKey("runtime", Runtime)
LISTENER = web.AppKey("listener", str)
