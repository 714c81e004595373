"""The API and the workers (with the scheduler) in one process and one event loop.

One process rather than several: one Ctrl-C stops everything, nothing is left orphaned,
and pipelines never block the loop (CPU work and tools run in subprocesses), so sharing
it costs the API nothing. Signals belong to this module, not to uvicorn or arq, so the
shutdown is ours: stop taking requests and jobs, give running jobs their grace (saying
how long, for how many), close, then return to the caller, who stops the embedded
servers. A second SIGINT or SIGTERM stops waiting: running jobs go back to the queue and
resume at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence

import uvicorn
from arq.worker import Worker

from conveyor.kinds import Pipeline
from pipelines import lifecycle
from pipelines.dispatch import Dispatcher
from service.api.request_heads import BoundedHttpProtocol
from service.app import create_app
from service.cli.output import CliError, stderr
from service.config import Settings
from service.telemetry import monitoring

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ApiServer(uvicorn.Server):
    """uvicorn, minus its signal handling (it would re-raise the signal after serving)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _until_started(server: ApiServer, task: asyncio.Task, address: str) -> None:
    while not server.started:
        if task.done():
            raise CliError(f"the API could not start on {address} (is the port taken?)")
        await asyncio.sleep(0.05)


def _running_jobs(workers: Sequence[Worker]) -> int:
    return sum(len(dispatcher.tasks) for dispatcher in _dispatchers(workers))


def _dispatchers(workers: Sequence[Worker]) -> list[Dispatcher]:
    return [worker.ctx["dispatcher"] for worker in workers if "dispatcher" in worker.ctx]


def _announce_stop(settings: Settings, workers: Sequence[Worker]) -> None:
    running = _running_jobs(workers)
    if running:
        stderr().print(
            f"Stopping: waiting up to {settings.worker_shutdown_grace:g}s for {running} running"
            f" job{'s' if running != 1 else ''} to finish. Ctrl-C again to stop now"
            " (they resume at the next start).",
            markup=False,
        )
    else:
        stderr().print("Stopping.", markup=False)


def queues_to_serve(settings: Settings, pipelines: Sequence[Pipeline]) -> list[str]:
    """The queues `up` runs a worker for: the deployment's, and each kind's own (`queue=`)."""
    return monitoring.queue_names(settings, (kind.spec(settings).queue for kind in pipelines))


async def run_together(
    settings: Settings, pipelines: Sequence[Pipeline], *, host: str, port: int, on_ready: Callable[[], None]
) -> None:
    """Serve the API on host:port and one worker per queue (a kind declared with `queue=`
    included) until SIGINT or SIGTERM."""
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        lifespan="on",
        http=BoundedHttpProtocol,
        log_level="warning",
        access_log=False,
    )
    server = ApiServer(config)
    workers = [
        lifecycle.worker(settings.model_copy(update={"queue_name": name}), pipelines, scheduler=index == 0)
        for index, name in enumerate(queues_to_serve(settings, pipelines))
    ]
    stopping = asyncio.Event()

    def on_signal() -> None:
        if stopping.is_set():  # the second one: stop waiting
            stderr().print("Stopping now: running jobs go back to the queue.", markup=False)
            server.force_exit = True
            for dispatcher in _dispatchers(workers):
                dispatcher.hand_back_now()
        else:
            _announce_stop(settings, workers)
        stopping.set()

    loop = asyncio.get_running_loop()
    for signum in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    api_task = asyncio.create_task(server.serve())
    worker_tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    try:
        await _until_started(server, api_task, f"{host}:{port}")
        on_ready()
        stop_task = asyncio.create_task(stopping.wait())
        await asyncio.wait([stop_task, api_task, *worker_tasks], return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
    finally:
        server.should_exit = True
        # All at once, each to its end whatever the others do: one failing to close must
        # not keep the rest open.
        closed = await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
        ended = await asyncio.gather(api_task, *worker_tasks, return_exceptions=True)
    failures = [result for result in (*closed, *ended) if isinstance(result, Exception)]
    if not stopping.is_set():
        cause = next((repr(failure) for failure in failures), "no error given")
        raise CliError(f"the API or a worker stopped on its own ({cause})")
    if failures:
        raise CliError(f"stopped, but not cleanly: {failures[0]!r}")
