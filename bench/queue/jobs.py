"""The body of `bench_job`, shared by every system's worker so they all do the same work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .recorder import AsyncRecorder, SyncRecorder


async def perform(
    recorder: AsyncRecorder,
    index: int,
    enqueued_at: float,
    sleep_s: float,
    hold: bool,
    heartbeat: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Sleep, then report; a held job reports its start and sleeps, beating `heartbeat` if given."""
    started_at = time.time()
    if hold:
        await recorder.started(index)
        await _sleep(sleep_s, heartbeat)
        return
    if sleep_s:
        await asyncio.sleep(sleep_s)
    await recorder.finished(enqueued_at, started_at)


async def _sleep(seconds: float, heartbeat: Callable[[], Awaitable[object]] | None) -> None:
    if heartbeat is None:
        await asyncio.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await heartbeat()
        await asyncio.sleep(1.0)


def perform_sync(recorder: SyncRecorder, index: int, enqueued_at: float, sleep_s: float, hold: bool) -> None:
    """The same job for thread- or process-based workers, which are never crash-tested."""
    del index, hold
    started_at = time.time()
    if sleep_s:
        time.sleep(sleep_s)
    recorder.finished(enqueued_at, started_at)
