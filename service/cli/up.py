"""`conveyor up`: everything in one command, on embedded defaults unless told otherwise."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from service.cli.options import data_dir_option
from service.cli.output import CliError, guarded, stdout

EXAMPLES = """Examples:

  conveyor up

  conveyor up --port 9000 --data-dir /var/lib/conveyor

  DATABASE_URL=postgresql://db/conveyor REDIS_URL=redis://cache:6379/0 conveyor up --host 0.0.0.0

DATABASE_URL, REDIS_URL and STORAGE_URL, when set, replace the embedded ones.

--data-dir (or CONVEYOR_HOME) defaults to ~/.local/share/conveyor."""


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


@contextmanager
def signals_held() -> Iterator[None]:
    """While the embedded servers stop, another Ctrl-C or SIGTERM must not cut that short
    and leave them running; it is ignored (they stop within seconds)."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command(epilog=EXAMPLES)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, help="The API's port.")
@click.option("--host", default="127.0.0.1", help="The address the API listens on.")
@data_dir_option
@click.option("--new-key", is_flag=True, help="Make a new API key instead of reusing the kept one.")
@guarded
def up(port: int, host: str, data_dir: Path, new_key: bool) -> None:
    """Run the API, a worker and the scheduler in one process, on embedded defaults.

    Nothing to install beyond the Python package: PostgreSQL and Redis run embedded,
    files, emails and keys are kept in --data-dir, and data persists across restarts.
    It checks PostgreSQL, Redis, storage (stopping if one does not answer) and the tools
    jobs run (ffmpeg, ffprobe, tesseract: reported if missing) before it says it is up.
    """
    import asyncio

    from pipelines.registry import KindsNotLoaded, pipelines
    from pipelines.system_tools import probe_tools
    from service.cli.banner import announce
    from service.cli.embedded import EmbeddedServers, embedded_settings
    from service.cli.local import api_key, local_settings
    from service.cli.preflight import check_dependencies
    from service.cli.processes import run_together
    from service.config import load_settings
    from service.databases.migrate import upgrade

    ensure_port_free(host, port)
    url = f"http://{host}:{port}"
    servers = EmbeddedServers(data_dir, owner=True)
    try:
        with sigterm_as_interrupt():
            environment = load_settings()
            settings = local_settings(embedded_settings(environment, servers), servers.data_dir, host=host)
            try:
                kinds = pipelines(settings)  # the built-in kinds and those of CONVEYOR_KINDS
            except KindsNotLoaded as exc:
                raise CliError(str(exc)) from None
            asyncio.run(check_dependencies(settings, environment.model_fields_set))
            upgrade(settings.database_url)
            key = asyncio.run(api_key(settings.database_url, servers.data_dir, new=new_key))
            probe_tools()
            asyncio.run(
                run_together(
                    settings,
                    kinds,
                    host=host,
                    port=port,
                    on_ready=lambda: announce(settings, url, key, servers.data_dir),
                )
            )
    finally:
        with signals_held():
            servers.close()
    stdout().print("Conveyor stopped.")
