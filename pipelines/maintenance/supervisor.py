"""The worker's background loops kept running: heartbeat, session, listeners, reconciler,
crash watch, schedules.

Each loop rides out the failures it expects (a server down, a connection lost) itself. An
error none of them foresaw (a bug, an exception type nobody listed) would end its task in
silence, and a worker without, say, its heartbeat looks dead while it still runs its jobs:
they would be handed to other workers. So an error that escapes a loop is logged with its
traceback and counted (`conveyor_background_loop_restarts_total`), and the loop starts
again after a pause that doubles while it keeps failing at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from service.telemetry import metrics

log = structlog.get_logger("conveyor.supervisor")

FIRST_PAUSE_SECONDS = 0.5
LONGEST_PAUSE_SECONDS = 30.0


async def keep_running(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run `loop()` until cancelled, starting it again whenever it fails or returns."""
    pause = FIRST_PAUSE_SECONDS
    while True:
        started = time.monotonic()
        try:
            await loop()
        except Exception:
            log.exception("background loop failed; starting it again", loop=name, pause=pause)
        else:
            log.error("background loop returned; starting it again", loop=name, pause=pause)
        metrics.BACKGROUND_LOOP_RESTARTS.labels(name).inc()
        if time.monotonic() - started > LONGEST_PAUSE_SECONDS:
            pause = FIRST_PAUSE_SECONDS  # it had been running well: not a loop failing at once
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_SECONDS)


def start(name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task:
    """`loop` as a supervised task, named for the logs and `asyncio.all_tasks()`."""
    return asyncio.create_task(keep_running(name, loop), name=f"conveyor {name}")
