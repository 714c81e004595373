"""Options shared by several commands, so each means the same everywhere, and the groups
the commands are gathered in.

Commands are declared with click, which typer is built on, rather than typer: typer 0.29
coerces every parameter through a pydantic TypeAdapter it builds at parse time, which
doubled the start-up of every command (tests/test_cli_startup.py keeps parsing light).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click


def default_data_dir() -> Path:
    """Per user, not per working directory, so admin commands run anywhere find what
    `conveyor up` made: `$XDG_DATA_HOME/conveyor`, else `~/.local/share/conveyor`."""
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "conveyor"


DEFAULT_DATA_DIR = default_data_dir()
DEFAULT_URL = "http://127.0.0.1:8000"

F = TypeVar("F", bound=Callable[..., Any])


class CommandGroup(click.Group):
    """A group of commands that its help lists in the order they were added (the order a
    newcomer needs them: `up` first), not alphabetically; run bare, it shows its help."""

    def __init__(self, **options: Any) -> None:
        super().__init__(no_args_is_help=True, **options)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def _env_option(*declarations: str, envvar: str | list[str], **options: Any) -> Callable[[F], F]:
    """An option that an environment variable can set, which its help names."""
    return click.option(*declarations, envvar=envvar, show_envvar=True, **options)


json_option = click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON on stdout.")
tenant_option = click.option("--tenant", "-t", required=True, help="The tenant's name.")
data_dir_option = _env_option(
    "--data-dir",
    envvar=["CONVEYOR_HOME", "CONVEYOR_DATA_DIR"],
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    help="Where `conveyor up` keeps its embedded PostgreSQL, Redis, files and keys.",
)
database_url_option = _env_option(
    "--database-url", envvar="DATABASE_URL", help="PostgreSQL to use; unset means the embedded one in --data-dir."
)
redis_url_option = _env_option(
    "--redis-url", envvar="REDIS_URL", help="Redis to use; unset means the embedded one in --data-dir."
)
url_option = _env_option("--url", envvar="CONVEYOR_URL", default=DEFAULT_URL, help="The Conveyor API.")
key_option = _env_option(
    "--key", envvar="CONVEYOR_API_KEY", help="An API key (`conveyor keys create` or `conveyor up` prints one)."
)
storage_url_option = _env_option(
    "--storage-url",
    envvar="STORAGE_URL",
    help="Where jobs' files are kept (file:// or s3://); unset means the embedded storage in --data-dir.",
)
