"""The API and the workers (with the scheduler) in one process and one event loop.

One process rather than several: one Ctrl-C stops everything, nothing is left orphaned,
and pipelines never block the loop (CPU work and tools run in subprocesses), so sharing
it costs the API nothing. Signals belong to this module, not to uvicorn or arq, so the
shutdown is ours: stop taking requests and jobs, close, then return to the caller, who
stops the embedded servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence

import uvicorn

from pipelines import lifecycle
from pipelines.pipeline import Pipeline
from service.app import create_app
from service import monitoring
from service.cli.output import CliError
from service.config import Settings
from service.request_heads import BoundedHttpProtocol

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


async def run_together(settings: Settings, pipelines: Sequence[Pipeline], *, host: str, port: int,
                       on_ready: Callable[[], None]) -> None:
    """Serve the API on host:port and one worker per queue until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, stopping.set)
    config = uvicorn.Config(create_app(settings), host=host, port=port, lifespan="on", http=BoundedHttpProtocol,
                            log_level="warning", access_log=False)
    server = ApiServer(config)
    workers = [lifecycle.worker(settings.model_copy(update={"queue_name": name}), pipelines, scheduler=index == 0)
               for index, name in enumerate(monitoring.queue_names(settings))]
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
        for worker in workers:
            await worker.close()
        ended = await asyncio.gather(api_task, *worker_tasks, return_exceptions=True)
    if not stopping.is_set():
        cause = next((repr(result) for result in ended if isinstance(result, Exception)), "no error given")
        raise CliError(f"the API or a worker stopped on its own ({cause})")
