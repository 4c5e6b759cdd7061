"""G1 self-checks: evidence, at start-up and every minute, that held bytes cannot reach a disk.

A check answers ok, fail, unknown (the platform cannot tell; never counted as ok) or
skipped (deliberately not done, with the reason). Start-up refuses only the failures that
break G1 outright, and only in strict mode; the rest are reported, never hidden.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import tempfile
from collections.abc import Callable

from ..config import Config
from ..store.local.tmpfs import StorageFolderError, prepare_folder
from . import sysfacts
from .checks import CheckResult

MiB = 1024 * 1024
# Locked memory beyond the held bytes: interpreter, libraries, buffers, thread stacks.
LOCK_MARGIN = 256 * MiB
DISK_WRITE_BOUND = MiB
MMAP_THRESHOLD = MiB  # allocations this large get their own mapping (see lock_memory)
TRIM_THRESHOLD = 4 * MiB  # free heap top kept for requests' transient buffers (sysfacts)
SHM = "/dev/shm"  # noqa: S108 - the usual tmpfs; a folder there is verified before use
CHECKS = (
    "storage_is_ram",
    "swap_safe",
    "memory_locked",
    "core_dumps_off",
    "tmpdir_safe",
    "no_disk_writes",
)
_REMEDIES = {
    "storage_is_ram": "mount a tmpfs there or set guarantees.require_tmpfs = false",
    "swap_safe": "turn swap off, or lock memory (CAP_IPC_LOCK or a large RLIMIT_MEMLOCK) "
    "and, for the tmpfs backend, mount the tmpfs with noswap",
    "core_dumps_off": "allow setrlimit(RLIMIT_CORE) and prctl(PR_SET_DUMPABLE) here",
    "tmpdir_safe": "set TMPDIR to a folder on tmpfs",
}


class Guarantees:
    """The G1 checks for one process. `proc` and `shm` are injectable for tests."""

    def __init__(
        self,
        config: Config,
        backend_name: str,
        storage_path: str | None,
        *,
        proc: str = "/proc",
        shm: str = SHM,
        disk_write_bound: int = DISK_WRITE_BOUND,
    ) -> None:
        self._config = config
        self._backend = backend_name
        self._storage = storage_path
        self._proc = proc
        self._shm = shm
        self._bound = disk_write_bound
        self._mountinfo = os.path.join(proc, "self", "mountinfo")
        self._lock = CheckResult("memory_locked", "skipped", "process hardening not applied")
        self._locked = False
        self._io_fd: int | None = None
        self._baseline: int | None = None
        self._results: list[CheckResult] = []

    @property
    def results(self) -> list[CheckResult]:
        """The last results of `run_checks` (empty before the first run)."""
        return list(self._results)

    # -- start-up hardening ------------------------------------------------------------

    def apply_process_hardening(self) -> None:
        """Once, before anything is stored. Never raises: run_checks reports what failed."""
        self._open_io()  # first: once not dumpable, a non-root process cannot reopen it
        self.disable_core_dumps()
        self._lock = self.lock_memory()
        self.point_tmpdir()
        self._baseline = self._write_bytes()

    def close(self) -> None:
        if self._io_fd is not None:
            os.close(self._io_fd)
            self._io_fd = None

    def _open_io(self) -> None:
        if self._io_fd is None:
            with contextlib.suppress(OSError):
                self._io_fd = os.open(os.path.join(self._proc, "self", "io"), os.O_RDONLY)

    def disable_core_dumps(self) -> None:
        """RLIMIT_CORE 0 stops dumps to files; only PR_SET_DUMPABLE 0 also stops dumps piped
        to a core_pattern handler (and ptrace by the same user)."""
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError):
            sysfacts.prctl(sysfacts.PR_SET_DUMPABLE, 0)

    def lock_bytes_needed(self) -> int:
        """The memlock floor below which MCL_FUTURE would make later allocations fail.

        The memory backend holds every byte itself. The tmpfs and redis backends do not: the
        process holds an upload being ingested and the copy a read returns, hence two uploads.
        A floor, not a promise: enough concurrent requests can still exceed it.
        """
        if self._backend == "memory":
            return self._config.storage.max_bytes + LOCK_MARGIN
        return 2 * self._config.limits.max_upload_bytes + LOCK_MARGIN

    def lock_memory(self) -> CheckResult:
        """mlockall when the limits allow it. MCL_ONFAULT locks pages as they are touched, so
        idle thread stacks and arenas are not pre-faulted into RAM; older kernels lack it."""
        name = "memory_locked"
        if not self._config.guarantees.lock_memory:
            return CheckResult(name, "skipped", "guarantees.lock_memory is false")
        if sysfacts.libc() is None:
            return CheckResult(name, "unknown", "mlockall is not reachable on this platform")
        status = os.path.join(self._proc, "self", "status")
        allowed, why = sysfacts.may_lock_memory(self.lock_bytes_needed(), status)
        if not allowed:
            return CheckResult(name, "skipped", why)
        # Locked pages cannot be madvised away: large buffers (decodes, big items) must be
        # mappings of their own, so that freeing them gives the pages back (munmap).
        sysfacts.pin_mmap_threshold(MMAP_THRESHOLD)
        sysfacts.pin_trim_threshold(TRIM_THRESHOLD)
        flags = sysfacts.MCL_CURRENT | sysfacts.MCL_FUTURE
        done = "MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT"
        try:
            try:
                sysfacts.mlockall(flags | sysfacts.MCL_ONFAULT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: no MCL_ONFAULT before Linux 4.4
                    raise
                sysfacts.mlockall(flags)
                done = "MCL_CURRENT|MCL_FUTURE"
        except OSError as exc:
            return CheckResult(name, "fail", f"{exc.strerror} (errno {exc.errno}) with {why}")
        self._locked = True
        return CheckResult(name, "ok", f"mlockall({done}) done ({why}); {self._returned()}")

    def _returned(self) -> str:
        """Whether purged memory goes back to the kernel although it is locked."""
        how = sysfacts.locked_pages_drop()
        if self._backend == "memory":
            return (
                "purged items' pages go back to the kernel: each item is in a mapping of its "
                f"own or an arena, unmapped when empty, its pages dropped at purge ({how})"
            )
        if self._backend == "tmpfs":
            return "purged items' pages go back to the kernel: tmpfs files, unlinked at purge"
        return "item bytes are held by the redis server, not this process"

    def point_tmpdir(self) -> None:
        """Send temp files to RAM: a library that spools to TMPDIR must not reach a disk."""
        if self._is_ram(tempfile.gettempdir()):
            return
        candidates: list[tuple[str, str]] = []
        if self._backend == "tmpfs" and self._storage:
            candidates.append((self._storage, os.path.join(self._storage, ".tmp")))
        candidates.append((self._shm, os.path.join(self._shm, f"query-cache-tmp-{os.geteuid()}")))
        for parent, folder in candidates:
            if not self._is_ram(parent):
                continue
            try:
                if parent == self._storage:
                    prepare_folder(parent)
                target = str(prepare_folder(folder))
            except StorageFolderError:
                if parent == self._storage:
                    continue  # an unsafe storage folder: the scheduled checks will say why
                try:  # someone else owns that name in the shared folder: take a fresh one
                    target = tempfile.mkdtemp(prefix="query-cache-tmp-", dir=parent)
                except OSError:
                    continue
            os.environ["TMPDIR"] = target
            tempfile.tempdir = None  # gettempdir() caches; make it read TMPDIR again
            return

    def _is_ram(self, path: str) -> bool:
        return sysfacts.filesystem(path, self._mountinfo).is_ram is True

    def _write_bytes(self) -> int | None:
        return sysfacts.read_write_bytes(self._io_fd, os.path.join(self._proc, "self", "io"))

    # -- periodic checks ---------------------------------------------------------------

    def run_checks(self) -> list[CheckResult]:
        """All checks; cheap (a statfs and a few /proc reads). A check that raises is
        reported unknown: the checks must never take the service down."""
        checks: list[tuple[str, Callable[[str], CheckResult]]] = [
            ("storage_is_ram", self._storage_is_ram),
            ("swap_safe", self._swap_safe),
            ("memory_locked", lambda _: self._lock),
            ("core_dumps_off", self._core_dumps_off),
            ("tmpdir_safe", self._tmpdir_safe),
            ("no_disk_writes", self._no_disk_writes),
        ]
        results: list[CheckResult] = []
        for name, check in checks:
            try:
                results.append(check(name))
            except Exception as exc:
                reason = " ".join(f"check raised {exc!r}".split())  # keep it one line
                results.append(CheckResult(name, "unknown", reason))
        self._results = results
        return results

    def _storage_is_ram(self, name: str) -> CheckResult:
        if self._backend == "memory":
            return CheckResult(name, "ok", "memory backend: bytes live in process memory")
        if self._backend != "tmpfs":
            return CheckResult(name, "unknown", f"{self._backend} backend: checked by the backend")
        path = self._storage
        if not path:
            return CheckResult(name, "fail", "storage.path is empty")
        return self._on_ram(name, path, path)

    def _on_ram(self, name: str, path: str, label: str) -> CheckResult:
        """ok when `path` is on tmpfs or ramfs; `label` names it in the reason."""
        fs = sysfacts.filesystem(path, self._mountinfo)
        if fs.is_ram is None:
            return CheckResult(name, "unknown", f"{path}: cannot tell its filesystem ({fs.name})")
        if fs.is_ram:
            return CheckResult(name, "ok", f"{label} is on {fs.name}")
        return CheckResult(name, "fail", f"{label} is on {fs.name}, not tmpfs or ramfs")

    def _swap_safe(self, name: str) -> CheckResult:
        swaps = sysfacts.active_swaps(os.path.join(self._proc, "swaps"))
        if swaps is None:
            return CheckResult(name, "unknown", f"cannot read {self._proc}/swaps")
        if not swaps:
            return CheckResult(name, "ok", "no active swap")
        active = f"swap is active ({', '.join(swaps)})"
        if not self._locked:
            return CheckResult(name, "fail", f"{active} and process memory is not locked")
        if self._backend != "tmpfs":
            return CheckResult(name, "ok", f"{active} but process memory is locked")
        # realpath, not the nearest existing folder: a prefix names the mount either way.
        mount = sysfacts.mount_of(os.path.realpath(self._storage or "/"), self._mountinfo)
        if mount is None:
            return CheckResult(name, "unknown", f"{active}; cannot read {self._mountinfo}")
        if "noswap" in mount.options:
            return CheckResult(name, "ok", f"{active} but {mount.point} is mounted noswap")
        return CheckResult(name, "fail", f"{active} and {mount.point} is not mounted noswap")

    def _core_dumps_off(self, name: str) -> CheckResult:
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        try:
            dumpable = sysfacts.prctl(sysfacts.PR_GET_DUMPABLE)
        except OSError as exc:
            return CheckResult(name, "unknown", f"PR_GET_DUMPABLE: {exc.strerror}")
        limits = f"RLIMIT_CORE {soft}/{hard}, dumpable {dumpable}"
        if soft == 0 and dumpable == 0:
            return CheckResult(name, "ok", limits)
        return CheckResult(name, "fail", f"{limits}: a crash could write memory to disk")

    def _tmpdir_safe(self, name: str) -> CheckResult:
        tmp = tempfile.gettempdir()
        return self._on_ram(name, tmp, f"temp dir {tmp}")

    def _no_disk_writes(self, name: str) -> CheckResult:
        current = self._write_bytes()
        if current is None:
            return CheckResult(name, "unknown", f"cannot read {self._proc}/self/io")
        if self._baseline is None:
            self._baseline = current
            return CheckResult(name, "unknown", "no baseline before this check; recorded now")
        grown = current - self._baseline
        if grown <= self._bound:
            return CheckResult(name, "ok", f"{grown} bytes written to block devices since start")
        return CheckResult(
            name,
            "fail",
            f"{grown} bytes written to block devices since start (bound {self._bound}): "
            "something writes to disk (a log redirected to a disk file counts too)",
        )

    # -- start-up decision -------------------------------------------------------------

    def startup_failures(self, results: list[CheckResult]) -> list[CheckResult]:
        """The results that stop start-up: none unless strict; never memory_locked or
        no_disk_writes; storage_is_ram only for the tmpfs backend with require_tmpfs."""
        settings = self._config.guarantees
        if not settings.strict:
            return []
        fatal = {"swap_safe", "core_dumps_off", "tmpdir_safe"}
        if settings.require_tmpfs and self._backend == "tmpfs":
            fatal.add("storage_is_ram")
        return [result for result in results if result.name in fatal and not result.ok]


def format_failure(result: CheckResult, storage_path: str | None) -> str:
    """One line for the operator: the config key or check, what was found, what to do."""
    remedy = _REMEDIES.get(result.name, "see /admin/guarantees")
    if result.name == "storage_is_ram":
        path = storage_path or ""
        found = result.reason if result.reason.startswith(path) else f"{path}: {result.reason}"
        return f"storage.path: {found}; {remedy}"
    return f"guarantees: {result.name} is {result.status}: {result.reason}; {remedy}"
