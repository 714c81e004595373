"""How every command speaks: data on stdout (a table, or JSON with `--json`), messages on
stderr, and failures as one readable line and an exit status, never a traceback."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import httpx
import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.markup import escape

from service.embedded import EmbeddedServerError
from service.errors import DependencyUnavailable

# Exit statuses scripts can rely on.
FAILED = 1  # the command, or the job it waited for, did not succeed
TIMED_OUT = 124  # as timeout(1) does

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure to report in one line and exit with `code`."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def stdout() -> Console:
    # Built per call: Console resolves sys.stdout when it writes, but tests swap streams.
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def ago(seconds: float | None) -> str:
    """A duration the way a person glances at it: 42.0s, 3.5m, 2.0h, 1.5d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _message(exc: BaseException) -> str:
    if isinstance(exc, CliError):
        return exc.message
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach the API at {exc.request.url.copy_with(path='/', query=None)}: {exc or type(exc).__name__}"
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"the database has no Conveyor schema: run `alembic upgrade head` ({exc})"
    if isinstance(exc, asyncpg.PostgresError):
        return f"database error: {exc}"
    if isinstance(exc, RedisError):
        return f"Redis error: {exc}"
    return f"{exc}"


EXPECTED = (CliError, httpx.TransportError, asyncpg.PostgresError, asyncpg.InterfaceError, RedisError,
            DependencyUnavailable, EmbeddedServerError, OSError, TimeoutError)


def guarded(command: F) -> F:
    """Turn the failures a user can meet into `error: …` and an exit status."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EXPECTED as exc:
            stderr().print(f"[bold red]error:[/] {escape(_message(exc))}")
            raise typer.Exit(exc.code if isinstance(exc, CliError) else FAILED) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return run  # type: ignore[return-value]
