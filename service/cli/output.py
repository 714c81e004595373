"""How every command speaks: data on stdout (a table, or JSON with `--json`), messages on
stderr, and failures as one readable line and an exit status, never a traceback.

Imported by every command at start, so it imports nothing heavy: the failures it
recognises are looked up among the libraries the command has loaded (see `_expected`).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # rich is drawn on when there is something to draw
    from rich.console import Console
    from rich.table import Table

# Exit statuses scripts can rely on.
FAILED = 1  # the command, or the job it waited for, did not succeed
TIMED_OUT = 124  # as timeout(1) does

SHORT_ID = 8  # characters of a job id that tables show

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure to report in one line and exit with `code`."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def stdout() -> Console:
    # Built per call: Console resolves sys.stdout when it writes, but tests swap streams.
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def new_table(*columns: str, **options: Any) -> Table:
    """A rich Table with these column headers (and rich's options, e.g. title)."""
    from rich.table import Table

    return Table(*columns, **options)


def ago(seconds: float | None) -> str:
    """A duration the way a person glances at it: 42.0s, 3.5m, 2.0h, 1.5d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def short_id(job_id: str) -> str:
    """How tables show a job id: its start, which `conveyor jobs show` takes back."""
    return job_id[:SHORT_ID]


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _loaded(module: str, name: str) -> type | None:
    """`module.name` if this run imported `module`: an exception of a library the command
    never loaded cannot have been raised, so there is no need to import it to recognise it."""
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None


#: The failures a user can meet, beyond CliError, OSError and TimeoutError: (module, class).
EXPECTED = (
    ("conveyor.client", "ApiError"),
    ("httpx", "TransportError"),
    ("asyncpg", "PostgresError"),
    ("asyncpg", "InterfaceError"),
    ("redis.exceptions", "RedisError"),
    ("service.errors", "DependencyUnavailable"),
    ("service.cli.embedded", "EmbeddedServerError"),
)


def _expected() -> tuple[type, ...]:
    loaded = (_loaded(module, name) for module, name in EXPECTED)
    return (CliError, OSError, TimeoutError, *(kind for kind in loaded if kind is not None))


def _is(exc: BaseException, module: str, name: str) -> bool:
    kind = _loaded(module, name)
    return kind is not None and isinstance(exc, kind)


def _message(exc: BaseException) -> str:
    if isinstance(exc, CliError):
        return exc.message
    if _is(exc, "httpx", "TransportError"):
        import httpx  # already loaded, or _is would have said no

        assert isinstance(exc, httpx.TransportError)
        return f"cannot reach the API at {exc.request.url.copy_with(path='/', query=None)}: {exc or type(exc).__name__}"
    if _is(exc, "asyncpg", "UndefinedTableError"):
        return f"the database has no Conveyor schema: run `alembic upgrade head` ({exc})"
    if _is(exc, "asyncpg", "PostgresError"):
        return f"database error: {exc}"
    if _is(exc, "redis.exceptions", "RedisError"):
        return f"Redis error: {exc}"
    return f"{exc}"


def guarded(command: F) -> F:
    """Turn the failures a user can meet into `error: …` and an exit status."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, _expected()):
                raise
            from rich.markup import escape

            stderr().print(f"[bold red]error:[/] {escape(_message(exc))}")
            raise click.exceptions.Exit(exc.code if isinstance(exc, CliError) else FAILED) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None

    return run  # type: ignore[return-value]
