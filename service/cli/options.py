"""Options shared by several commands, so each means the same everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer


def default_data_dir() -> Path:
    """Per user, not per working directory, so admin commands run anywhere find what
    `conveyor up` made: `$XDG_DATA_HOME/conveyor`, else `~/.local/share/conveyor`."""
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "conveyor"


DEFAULT_DATA_DIR = default_data_dir()
DEFAULT_URL = "http://127.0.0.1:8000"


def command_group(**options: Any) -> typer.Typer:
    """A Typer for a group of commands. Its help is drawn by click, not rich: rich's help
    would load markdown and syntax highlighting on every `--help`, and the CLI must start fast."""
    return typer.Typer(rich_markup_mode=None, no_args_is_help=True, **options)


Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Tenant = Annotated[str, typer.Option("--tenant", "-t", help="The tenant's name.", show_default=False)]
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar=["CONVEYOR_HOME", "CONVEYOR_DATA_DIR"],
        file_okay=False,
        help="Where `conveyor up` keeps its embedded PostgreSQL, Redis, files and keys.",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        show_default=False,
        help="PostgreSQL to use; unset means the embedded one in --data-dir.",
    ),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        show_default=False,
        help="Redis to use; unset means the embedded one in --data-dir.",
    ),
]
ApiUrl = Annotated[str, typer.Option("--url", envvar="CONVEYOR_URL", help="The Conveyor API.")]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="CONVEYOR_API_KEY",
        show_default=False,
        help="An API key (`conveyor keys create` or `conveyor up` prints one).",
    ),
]
StorageUrl = Annotated[
    str | None,
    typer.Option(
        "--storage-url",
        envvar="STORAGE_URL",
        show_default=False,
        help="Where jobs' files are kept (file:// or s3://); unset means the embedded storage in --data-dir.",
    ),
]
