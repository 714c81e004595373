"""The worker entry point: `arq worker.WorkerSettings`.

Wiring only: the kinds (pipelines/registry.py: the built-in ones and those of the
modules in `CONVEYOR_KINDS`; a module that cannot be loaded stops the worker here, named)
become arq functions, and the process-wide resources, with the dispatcher that claims and
runs the jobs (pipelines/dispatch.py) and the clock that fires the schedules (the
built-in ones of pipelines/schedule.py among them), are opened and closed by the hooks in
pipelines/lifecycle.py.
Everything is configured from the environment (service/config.py).
"""

import sys

from pipelines import lifecycle
from pipelines.registry import KindsNotLoaded, pipelines
from service.config import get_settings
from service.queue import deserialize, redis_settings, serialize

lifecycle.use_uvloop()
_settings = get_settings()
try:
    _pipelines = pipelines(_settings)  # the built-in kinds and those of CONVEYOR_KINDS
except KindsNotLoaded as exc:
    sys.exit(f"conveyor worker: {exc}")
_startup, _shutdown = lifecycle.hooks(_settings, _pipelines)


class WorkerSettings:
    functions = lifecycle.functions(_pipelines)
    on_startup = _startup
    on_shutdown = _shutdown
    redis_settings = redis_settings(_settings.redis_url)
    queue_name = _settings.queue_name
    max_jobs = lifecycle.ARQ_JOB_SLOTS  # the dispatcher started by on_startup claims the jobs
    poll_delay = lifecycle.ARQ_POLL_DELAY
    keep_result = 0  # results live in the ledger
    max_tries = lifecycle.ARQ_MAX_TRIES
    health_check_interval = 5
    job_serializer = serialize
    job_deserializer = deserialize
