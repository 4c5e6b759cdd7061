"""The work pool's budget of decoded bytes, taken from work threads and from the loop, and
the upload checks that use it: one trip to the pool when the decode fits at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from cache.config import LimitsConfig
from cache.errors import ImageTooLarge, InvalidImage, ServiceUnavailable
from cache.intake.digests import Wanted
from cache.intake.inspect import InspectorPool
from cache.intake.work import WorkPool
from tests.support import images


@pytest.fixture
def pool() -> Iterator[WorkPool]:
    work = WorkPool(threads=4, budget_bytes=100, wait=5.0)
    yield work
    work.close()


async def test_one_decode_over_the_whole_budget_is_422(pool: WorkPool) -> None:
    with pytest.raises(ImageTooLarge):
        await pool.run(pool.try_reserve, 101)
    with pytest.raises(ImageTooLarge):
        await pool.run_within(101, lambda: None)
    assert pool.in_flight == 0


async def test_a_work_thread_runs_what_fits_and_gives_the_bytes_back(pool: WorkPool) -> None:
    seen: list[int] = []
    assert await pool.run(pool.run_if_fits, 60, lambda: seen.append(pool.in_flight))
    assert seen == [60] and pool.in_flight == 0
    assert pool.try_reserve(50)
    assert not await pool.run(pool.run_if_fits, 60, lambda: seen.append(-1))
    assert seen == [60] and pool.in_flight == 50


async def test_a_release_in_a_work_thread_wakes_a_decode_waiting_on_the_loop(
    pool: WorkPool,
) -> None:
    assert await pool.run(pool.try_reserve, 80)
    seen: list[int] = []
    waiting = asyncio.create_task(pool.run_within(50, lambda: seen.append(pool.in_flight)))
    await asyncio.sleep(0.01)
    assert seen == [] and pool.in_flight == 80
    assert not await pool.run(pool.try_reserve, 10)  # fits, but the waiter goes first
    await pool.run(pool.release, 80)
    await asyncio.wait_for(waiting, 1.0)  # woken by the release, not by its 5 s wait
    assert seen == [50] and pool.in_flight == 0


async def test_a_decode_that_never_fits_is_503_after_its_wait() -> None:
    work = WorkPool(threads=1, budget_bytes=100, wait=0.05)
    try:
        assert work.try_reserve(100)
        with pytest.raises(ServiceUnavailable):
            await work.run_within(1, lambda: None)
        assert work.in_flight == 100
    finally:
        work.close()


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_cancelled_request_leaves_the_bytes_held_until_its_decode_ends(
    pool: WorkPool,
) -> None:
    """A client that goes away does not free budget that a decode still uses."""
    started, gate = threading.Event(), threading.Event()

    def decode() -> None:
        started.set()
        gate.wait(5.0)

    request = asyncio.create_task(pool.run_within(70, decode))
    await _until(started.is_set)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert pool.in_flight == 70  # the decode runs on
    gate.set()
    await _until(lambda: pool.in_flight == 0)


async def test_a_job_cancelled_before_it_started_gives_its_bytes_back_at_once() -> None:
    work = WorkPool(threads=1, budget_bytes=100, wait=5.0)
    gate, ran = threading.Event(), threading.Event()
    try:
        busy = asyncio.create_task(work.run_within(30, lambda: gate.wait(5.0)))
        await _until(lambda: work.in_flight == 30)
        queued = asyncio.create_task(work.run_within(40, ran.set))  # behind `busy`
        await _until(lambda: work.in_flight == 70)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert work.in_flight == 30
        gate.set()
        await busy
        assert work.in_flight == 0 and not ran.is_set()
    finally:
        gate.set()
        work.close()


def test_threads_never_book_more_than_the_budget() -> None:
    work = WorkPool(threads=1, budget_bytes=100)
    peak, lock = [0], threading.Lock()

    def job() -> None:
        with lock:
            peak[0] = max(peak[0], work.in_flight)

    def hammer() -> None:
        for _ in range(2_000):
            work.run_if_fits(30, job)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    work.close()
    assert 0 < peak[0] <= 90 and work.in_flight == 0


class CountingPool(WorkPool):
    trips = 0

    async def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.trips += 1
        return await super().run(fn, *args, **kwargs)

    async def run_within(self, cost, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.trips += 1
        return await super().run_within(cost, fn, *args, **kwargs)


@pytest.mark.parametrize(
    ("verify", "want"),
    [("decode", Wanted()), ("structure", Wanted(pdq=True)), ("decode", Wanted(pdq=True))],
)
async def test_an_upload_is_checked_in_one_trip_when_its_decodes_fit(
    verify: str, want: Wanted
) -> None:
    work = CountingPool(threads=2, budget_bytes=64 * 1024 * 1024)
    checks = InspectorPool(LimitsConfig(verify=verify), work)
    checks.wanted = lambda: want
    try:
        facts = await checks.inspect(images.png((120, 90)))
        assert work.trips == 1 and work.in_flight == 0
        assert (facts.pdq is not None) == want.pdq
        # With the budget taken, the decodes wait on the loop and go as their own trips.
        assert work.try_reserve(work.budget - 1)
        later = asyncio.create_task(checks.inspect(images.png((120, 90))))
        await asyncio.sleep(0.05)
        assert not later.done()
        work.release(work.budget - 1)
        again = await asyncio.wait_for(later, 2.0)
        assert again.sha256 == facts.sha256 and again.pdq == facts.pdq
        assert work.trips == 1 + 1 + (verify == "decode" and not want.pdq) + want.pdq
        assert work.in_flight == 0
    finally:
        work.close()


@pytest.mark.parametrize("verify", ["structure", "decode"])
async def test_with_pdq_on_an_image_is_decoded_once(
    verify: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PDQ decodes the whole image: under `verify = "decode"` that decode is the check."""
    opened: list[str] = []
    real_open = Image.open

    def counting_open(*args: object, **kwargs: object) -> Image.Image:
        opened.append(verify)
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", counting_open)
    work = WorkPool(threads=1, budget_bytes=64 * 1024 * 1024)
    checks = InspectorPool(LimitsConfig(verify=verify), work)
    checks.wanted = lambda: Wanted(pdq=True)
    try:
        facts = await checks.inspect(images.png((120, 90)))
        assert facts.pdq is not None and len(opened) == 1
        broken = images.gif_bad_pixels()
        checks.inspector.inspect(broken)  # the structure is sound ...
        with pytest.raises(InvalidImage):  # ... but the pixels do not decode: refused
            await checks.inspect(broken)
    finally:
        work.close()
