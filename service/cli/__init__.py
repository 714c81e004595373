"""The `conveyor` command: run Conveyor, manage tenants' keys, submit and follow jobs,
watch queues and workers.

One module per command group; this one only assembles them. Each imports, when loaded,
no more than it needs to declare its commands (typer and the CLI's own helpers): what a
command runs (database drivers, the app, storage clients…) it imports when it runs, so
`conveyor --help` and the parsing of any command start in a fraction of a second
(tests/test_cli_startup.py keeps it so).
"""

from __future__ import annotations

from service.cli import dashboard, jobs, keys, mail, ops, purge, samples, secrets, stats, submit, up, watch, webhooks
from service.cli.options import command_group
from service.cli.output import guarded

app = command_group(
    name="conveyor",
    help="Conveyor: background work for Python web apps (documents, videos, notifications, analytics).",
    epilog="Start with `conveyor up`, then `conveyor submit FILE --wait`. Every command has --help.",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)

app.command("up", epilog=up.EXAMPLES)(guarded(up.up))
app.command("submit", epilog=submit.EXAMPLES)(submit.command)
app.command("workers")(ops.workers_command)
app.command("queues")(ops.queues_command)
app.command("watch", epilog=watch.EXAMPLES)(watch.command)
app.command("stats", epilog=stats.EXAMPLES)(stats.command)
app.command("mail", epilog=mail.EXAMPLES)(mail.command)
app.command("samples", epilog=samples.EXAMPLES)(samples.command)
jobs.app.command("purge", epilog=purge.EXAMPLES)(purge.command)
app.add_typer(keys.app, name="keys")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(jobs.app, name="jobs")
app.add_typer(secrets.app, name="secrets")
app.add_typer(dashboard.app, name="dashboard")

__all__ = ["app"]
