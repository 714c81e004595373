"""`conveyor up`: everything in one command, on embedded defaults unless told otherwise."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from pipelines.errors import PermanentError
from pipelines.notifications.channels import require_channel
from pipelines.registry import pipelines
from pipelines.system_tools import probe_tools
from service.cli.local import API_KEY_FILE, DEFAULT_TENANT, api_key, local_settings
from service.cli.options import DEFAULT_DATA_DIR, DataDir
from service.cli.output import CliError, stdout
from service.cli.preflight import check_dependencies
from service.cli.processes import run_together
from service.cli.samples import samples_dir
from service.config import Settings, load_settings, mask
from service.embedded import EmbeddedServers, embedded_settings
from service.migrate import upgrade

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


def _tools_line() -> str:
    parts = []
    for name, check in probe_tools().items():
        if check["status"] != "pass":
            parts.append(f"{name} MISSING ({check['output']})")
        else:
            parts.append(f"{name} ok" + (f" ({', '.join(check['languages'])})" if check.get("languages") else ""))
    return ", ".join(parts)


def _channels_lines(settings: Settings) -> list[str]:
    if settings.smtp_url and settings.smtp_url.startswith("file://"):
        email = f"caught in {urlsplit(settings.smtp_url).path}, not sent (`conveyor mail` lists them; set SMTP_URL to send)"
    else:
        email = f"sent through {mask(settings.smtp_url)}" if settings.smtp_url else "off (set SMTP_URL)"
    hosts = ",".join(settings.callback_allowed_hosts) or "none"
    lines = [f"  email      {email}", f"  callbacks  webhooks may reach private hosts: {hosts}"]
    for channel in ("sms", "push"):
        try:
            require_channel(settings, channel)
            lines.append(f"  {channel:<9}  configured")
        except PermanentError as missing:  # its message says what to set
            lines.append(f"  {channel:<9}  off ({missing.message.partition(': ')[2]})")
    return lines


def announce(settings: Settings, url: str, key: str, data_dir: Path) -> None:
    console = stdout()
    console.print(f"[bold green]Conveyor is up[/] at [bold]{url}[/]")
    lines = [
        f"  database   {mask(settings.database_url)}",
        f"  redis      {settings.redis_url}",
        f"  storage    {settings.storage_url}",
        f"  data dir   {data_dir}",
        f"  tools      {_tools_line()}",
        *_channels_lines(settings),
        f"Dashboard: {url}/dashboard (admin key: {settings.admin_key.get_secret_value() if settings.admin_key else 'off'})",
        f"API key for tenant {DEFAULT_TENANT!r} (kept in {data_dir / API_KEY_FILE}; --new-key makes another):",
    ]
    for line in lines:
        console.print(line, markup=False)
    console.print(key, markup=False)
    sample = samples_dir() / "resume.pdf"
    console.print("Try (samples: `conveyor samples`):", markup=False)
    console.print(f'  curl -H "Authorization: Bearer {key}" -F file=@{sample} {url}/v1/documents', markup=False)
    console.print(f"  CONVEYOR_URL={url} CONVEYOR_API_KEY={key} conveyor submit {sample} --wait", markup=False)
    console.print("Ctrl-C stops it.", markup=False)
    console.file.flush()


def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="The API's port.")] = 8000,
    host: Annotated[str, typer.Option(help="The address the API listens on.")] = "127.0.0.1",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    new_key: Annotated[bool, typer.Option("--new-key", help="Make a new API key instead of reusing the kept one.")] = False,
) -> None:
    """Run the API, a worker and the scheduler in one process, on embedded defaults.

    Nothing to install beyond the Python package: PostgreSQL and Redis run embedded,
    files, emails and keys are kept in --data-dir, and data persists across restarts.
    It checks PostgreSQL, Redis, storage (stopping if one does not answer) and the tools
    jobs run (ffmpeg, ffprobe, tesseract: reported if missing) before it says it is up.
    """
    ensure_port_free(host, port)
    url = f"http://{host}:{port}"
    servers = EmbeddedServers(data_dir, owner=True)
    try:
        with sigterm_as_interrupt():
            environment = load_settings()
            settings = local_settings(embedded_settings(environment, servers), servers.data_dir, host=host)
            asyncio.run(check_dependencies(settings, environment.model_fields_set))
            upgrade(settings.database_url)
            key = asyncio.run(api_key(settings.database_url, servers.data_dir, new=new_key))
            probe_tools()
            asyncio.run(run_together(settings, pipelines(settings), host=host, port=port,
                                     on_ready=lambda: announce(settings, url, key, servers.data_dir)))
    finally:
        with signals_held():
            servers.close()
    stdout().print("Conveyor stopped.")
