"""`conveyor jobs …`: list, inspect, retry and cancel jobs through the HTTP API
(`jobs purge`, an operator command, lives in service/cli/purge.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import click

from service.cli.options import CommandGroup, json_option, key_option, url_option
from service.cli.output import CliError, emit_json, guarded, new_table, short_id, stderr, stdout

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

app = CommandGroup(
    name="jobs",
    help="List, inspect, retry, cancel and purge jobs.",
    epilog="Examples:\n\n  conveyor jobs list --status failed\n\n  conveyor jobs show 5f0c1a2b\n\n"
    "  conveyor jobs retry 5f0c1a2b\n\n  conveyor jobs retry --kind greet --status failed --dry-run\n\n"
    "  conveyor jobs list --kind video --json | jq '.items[].id'\n\n"
    "  conveyor jobs purge --older-than 7 --dry-run\n\n"
    "A job is named by its id or the start of it (at least 4 characters), as lists show it.",
)

job_id_argument = click.argument("job_id", help="The job's id, or its start as lists show it (at least 4 characters).")

SHOWN_LINES = 8  # of a long text
SHOWN_CHARS = 600
SHOWN_ITEMS = 20  # of a long list


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def jobs_table(jobs: list[dict], *, tenants: bool = False, title: str | None = None) -> Table:
    """Jobs one per row; with `tenants`, whose each is (views across tenants)."""
    table = new_table(
        "id", *(["tenant"] if tenants else []), "kind", "status", "progress", "stage", "created", title=title
    )
    for job in jobs:
        table.add_row(
            short_id(job["id"]),
            *([job["tenant"]] if tenants else []),
            job["kind"],
            job["status"],
            f"{100 * float(job.get('progress') or 0):.0f}%",
            job.get("stage") or "-",
            _when(job.get("created_at")),
        )
    return table


def shorten(value: Any) -> Any:
    """The value with each long text cut to its first lines and each long list to its first
    items, saying how much there is and that --full shows it all."""
    if isinstance(value, dict):
        return {name: shorten(item) for name, item in value.items()}
    if isinstance(value, list):
        kept = [shorten(item) for item in value[:SHOWN_ITEMS]]
        rest = len(value) - SHOWN_ITEMS
        return [*kept, f"… {rest:,} more of {len(value):,} items, --full to see all"] if rest > 0 else kept
    if isinstance(value, str) and (len(value) > SHOWN_CHARS or value.count("\n") >= SHOWN_LINES):
        start = "\n".join(value.splitlines()[:SHOWN_LINES])[:SHOWN_CHARS]
        return f"{start}\n… {len(value):,} characters, --full to see all"
    return value


def _show_job(job: dict, full: bool) -> None:
    console = stdout()
    for name in ("id", "kind", "status", "stage", "attempts", "created_at", "updated_at", "finished_at"):
        console.print(f"[bold]{name:>11}[/] {job.get(name) if job.get(name) is not None else '-'}")
    console.print(f"[bold]{'progress':>11}[/] {100 * float(job.get('progress') or 0):.0f}%")
    if job.get("stages"):
        table = new_table("stage", "status", "started", "finished")
        for stage in job["stages"]:
            table.add_row(
                stage["name"], stage["status"], _when(stage.get("started_at")), _when(stage.get("finished_at"))
            )
        console.print(table)
    for name in ("error", "metadata", "result"):
        if job.get(name):
            console.print(f"[bold]{name}[/]")
            console.print(_fields(job[name] if full else shorten(job[name])))


def _fields(value: Any) -> RenderableType:
    """A JSON object as name and value rows, texts as they read (lines, not escapes),
    other values as JSON."""
    from rich.json import JSON
    from rich.table import Table
    from rich.text import Text

    if not isinstance(value, dict):
        return JSON(json.dumps(value, default=str))
    grid = Table.grid(padding=(0, 2))
    for name, item in value.items():
        grid.add_row(Text(f"  {name}"), Text(item) if isinstance(item, str) else JSON(json.dumps(item, default=str)))
    return grid


@app.command("list")
@click.option("--kind", help="Only jobs of this kind (document, video, …).")
@click.option("--status", help="queued, running, succeeded, failed or cancelled.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, help="At most this many, newest first.")
@click.option("--cursor", help="Where the previous page ended (its next_cursor).")
@url_option
@key_option
@json_option
@guarded
def list_jobs(
    kind: str | None, status: str | None, limit: int, cursor: str | None, url: str, key: str | None, json_output: bool
) -> None:
    """List your jobs, newest first."""
    from service.cli.api import connect

    with connect(url, key) as api:
        page = api.jobs(kind=kind, status=status, limit=limit, cursor=cursor)
    if json_output:
        emit_json(page.to_dict())
        return
    stdout().print(jobs_table([job.to_dict() for job in page.items]))
    if page.next_cursor:
        stderr().print(f"more: --cursor {page.next_cursor}")


@app.command()
@job_id_argument
@click.option("--full", is_flag=True, help="Show long texts and lists whole, not their start.")
@url_option
@key_option
@json_option
@guarded
def show(job_id: str, full: bool, url: str, key: str | None, json_output: bool) -> None:
    """Show one job: status, stages, error or result (long texts cut short unless --full)."""
    from service.cli.api import connect, job_id_of

    with connect(url, key) as api:
        job = api.get(job_id_of(api, job_id)).to_dict()
    if json_output:
        emit_json(job)
    else:
        _show_job(job, full)


def _steer(action: Literal["cancel", "retry"], job_id: str, url: str, key: str | None, json_output: bool) -> None:
    from service.cli.api import connect, job_id_of

    with connect(url, key) as api:
        steer = api.cancel if action == "cancel" else api.retry
        job = steer(job_id_of(api, job_id))
    if json_output:
        emit_json(job.to_dict())
    else:
        click.echo(f"{job.id} {job.status}")


def steering(*filters):
    """The arguments of an action on one job or on every job the filter options match:
    the common filters, then `filters`, then the dry run and the connection options."""
    decorators = (
        click.argument(
            "job_id",
            required=False,
            help="The job's id or its start; or none, to act on every job the filter options match.",
        ),
        click.option("--kind", help="Every job of this kind."),
        click.option("--status", help="Every job with this status."),
        *filters,
        click.option("--created-after", help="Created after (ISO 8601 with an offset)."),
        click.option("--created-before", help="Created before (ISO 8601 with an offset)."),
        click.option("--dry-run", is_flag=True, help="Count the jobs the filter matches, change none."),
        url_option,
        key_option,
        json_option,
        guarded,
    )

    def decorate(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def _steer_one_or_many(
    action: Literal["cancel", "retry"], job_id: str | None, where: dict, dry_run: bool, url, key, json_output
) -> None:
    """One job by its id, or every job `where` matches (`POST /v1/jobs/{action}`)."""
    from service.cli.api import connect

    filters = {name: value for name, value in where.items() if value is not None}
    if job_id is not None:
        if filters or dry_run:
            raise CliError("give a job id or filter options, not both")
        _steer(action, job_id, url, key, json_output)
        return
    if not filters:
        raise CliError(f"give a job id, or filter options (--kind, --status, …) to {action} many")
    with connect(url, key) as api:
        steer = api.cancel_jobs if action == "cancel" else api.retry_jobs
        counts = steer(**filters, dry_run=dry_run)
    done = {"retry": "retried", "cancel": "cancelled"}[action]
    if json_output:
        emit_json({"matched": counts.matched, "changed": counts.changed})
    elif dry_run:
        click.echo(f"{counts.matched} jobs would be {done}")
    else:
        click.echo(f"{counts.matched} matched, {counts.changed} {done}")


@app.command()
@steering(click.option("--error-type", help="Every failed job with this error type."))
def retry(job_id: str | None, dry_run: bool, url: str, key: str | None, json_output: bool, **where: str | None) -> None:
    """Run a failed or cancelled job again, or every one the filter options match."""
    _steer_one_or_many("retry", job_id, where, dry_run, url, key, json_output)


@app.command()
@steering()
def cancel(
    job_id: str | None, dry_run: bool, url: str, key: str | None, json_output: bool, **where: str | None
) -> None:
    """Cancel a job, or every queued or running one the filter options match; a cancelled job
    ends `cancelled` (a running one at its next checkpoint)."""
    _steer_one_or_many("cancel", job_id, where, dry_run, url, key, json_output)
