"""`conveyor up`: everything in one command, on embedded defaults unless told otherwise."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli import targets
from service.cli.keys import create_key
from service.cli.options import DEFAULT_DATA_DIR, DataDir
from service.cli.output import CliError, stdout

if TYPE_CHECKING:  # the modules `up` runs are imported when it runs: `conveyor --help` starts fast
    from service.config import Settings
    from service.embedded import EmbeddedServers

DEFAULT_TENANT = "default"

EXAMPLES = """Examples:

  conveyor up

  conveyor up --port 9000 --data-dir /var/lib/conveyor

  DATABASE_URL=postgresql://db/conveyor REDIS_URL=redis://cache:6379/0 conveyor up --host 0.0.0.0

DATABASE_URL, REDIS_URL and STORAGE_URL, when set, are used instead of the embedded
PostgreSQL, Redis and file storage kept in --data-dir."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Until the event loop takes the signals over, SIGTERM unwinds like Ctrl-C, so the
    embedded servers are stopped even when it comes during start-up."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


async def _issue_key(database_url: str) -> str:
    async with targets.transaction(database_url) as conn:
        return await create_key(conn, DEFAULT_TENANT)


def announce(settings: Settings, url: str, key: str, servers: EmbeddedServers) -> None:
    from rich.markup import escape

    from service.config import mask

    console = stdout()
    console.print(f"[bold green]Conveyor is up[/] at [bold]{url}[/]")
    console.print(f"  database  {escape(mask(settings.database_url) or '')}")
    console.print(f"  redis     {escape(settings.redis_url)}")
    console.print(f"  storage   {escape(settings.storage_url)}")
    console.print(f"  data dir  {escape(str(servers.data_dir))}")
    console.print(f"API key for tenant {DEFAULT_TENANT!r} (shown once):")
    console.print(key, markup=False)
    console.print("Try:", markup=False)
    console.print(f'  curl -H "Authorization: Bearer {key}" -F file=@resume.pdf {url}/v1/documents', markup=False)
    console.print(f"  CONVEYOR_URL={url} CONVEYOR_API_KEY={key} conveyor submit resume.pdf --wait", markup=False)
    console.print("Ctrl-C stops it.", markup=False)
    console.file.flush()


def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="The API's port.")] = 8000,
    host: Annotated[str, typer.Option(help="The address the API listens on.")] = "127.0.0.1",
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Run the API, a worker and the scheduler in one process, on embedded defaults.

    Nothing to install beyond the Python package: PostgreSQL and Redis run embedded,
    files are kept in --data-dir, and data persists across restarts. Each start prints
    a fresh API key for the tenant "default".
    """
    from pipelines.registry import pipelines
    from service.cli.processes import run_together
    from service.config import load_settings
    from service.embedded import EmbeddedServers, embedded_settings
    from service.migrate import upgrade

    ensure_port_free(host, port)
    url = f"http://{host}:{port}"
    with sigterm_as_interrupt(), EmbeddedServers(data_dir) as servers:
        settings = embedded_settings(load_settings(), servers)
        upgrade(settings.database_url)
        key = asyncio.run(_issue_key(settings.database_url))
        asyncio.run(run_together(settings, pipelines(settings), host=host, port=port,
                                 on_ready=lambda: announce(settings, url, key, servers)))
    stdout().print("Conveyor stopped.")
