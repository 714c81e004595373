"""The `conveyor` command: run Conveyor, manage tenants' keys, submit and follow jobs,
watch queues and workers.

One module per command group; this one only assembles them.
"""

from __future__ import annotations

import typer

from service.cli import jobs, keys, mail, ops, purge, samples, stats, submit, up, watch, webhooks
from service.cli.output import guarded

app = typer.Typer(
    name="conveyor",
    help="Conveyor: background work for Python web apps (documents, videos, notifications, analytics).",
    epilog="Start with `conveyor up`, then `conveyor submit FILE --wait`. Every command has --help.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
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

__all__ = ["app"]
