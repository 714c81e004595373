"""A worker process that runs one no-op kind: `python -m arq testkit.ordered_worker.WorkerSettings`.

The production wiring (worker.WorkerSettings: hooks, dispatcher, heartbeats), serving only
the kind named by `TEST_KIND`, whose one stage does nothing: what a test of the queue's
order reads is when each job started, in the ledger.
"""

from __future__ import annotations

import os

import conveyor
import worker
from pipelines import lifecycle


@conveyor.job(os.environ["TEST_KIND"], timeout=30)
async def run(ctx: conveyor.Context, input: dict) -> dict:
    return {}


PIPELINES = (run.configured(worker._settings),)

# A dict, not a subclass: arq reads the settings class's own __dict__, not inherited ones.
WorkerSettings = {
    **{name: value for name, value in vars(worker.WorkerSettings).items() if not name.startswith("_")},
    "functions": lifecycle.functions(PIPELINES),
    **dict(zip(("on_startup", "on_shutdown"), lifecycle.hooks(worker._settings, PIPELINES), strict=True)),
}
