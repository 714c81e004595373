"""The `conveyor` command: run Conveyor, manage tenants' keys, submit and follow jobs,
watch queues and workers.

One module per command or group of commands; this one only assembles them. Each imports,
when loaded, no more than it needs to declare its commands (click and the CLI's own
helpers): what a command runs (database drivers, the app, storage clients, rich…) it
imports when it runs, so `conveyor --help` and the parsing of any command start in a
fraction of a second (tests/test_cli_startup.py keeps it so).
"""

from __future__ import annotations

from service.cli import (
    dashboard,
    jobs,
    keys,
    mail,
    ops,
    purge,
    samples,
    schedules,
    secrets,
    stats,
    submit,
    up,
    watch,
    webhooks,
    workflows,
)
from service.cli.options import CommandGroup

jobs.app.add_command(purge.purge)

app = CommandGroup(
    name="conveyor",
    help="Conveyor: background work for Python web apps (documents, videos, notifications, analytics).",
    epilog="Start with `conveyor up`, then `conveyor submit FILE --wait`. Every command has --help.",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120, "show_default": True},
    commands=[
        up.up,
        submit.submit,
        ops.workers,
        ops.queues,
        watch.watch,
        stats.stats,
        mail.command,
        samples.command,
        keys.app,
        webhooks.app,
        jobs.app,
        workflows.app,
        schedules.app,
        secrets.app,
        dashboard.app,
    ],
)

__all__ = ["app"]
