"""A worker's background loops outlive the errors nobody foresaw (pipelines/maintenance/supervisor.py)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from pipelines.maintenance import supervisor


def restarts(loop: str) -> float:
    return REGISTRY.get_sample_value("conveyor_background_loop_restarts_total", {"loop": loop}) or 0.0


async def test_a_loop_that_fails_or_returns_is_started_again_and_counted(monkeypatch):
    monkeypatch.setattr(supervisor, "FIRST_PAUSE_SECONDS", 0.01)
    runs = 0
    third_run = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("an error the loop did not expect")
        if runs == 2:
            return
        third_run.set()
        await asyncio.Event().wait()  # runs on, as a loop should

    before = restarts("flaky")
    task = supervisor.start("flaky", flaky)
    async with asyncio.timeout(10):
        await third_run.wait()
    assert restarts("flaky") - before == 2 and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancel_during_the_pause_stops_the_loop(monkeypatch):
    monkeypatch.setattr(supervisor, "FIRST_PAUSE_SECONDS", 60.0)
    failed = asyncio.Event()

    async def failing() -> None:
        failed.set()
        raise RuntimeError("down")

    task = supervisor.start("failing", failing)
    async with asyncio.timeout(10):
        await failed.wait()
    await asyncio.sleep(0)  # into its pause
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert restarts("failing") == 1
