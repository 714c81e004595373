"""`conveyor jobs …`: list, inspect, retry and cancel jobs through the HTTP API
(`jobs purge`, an operator command, lives in service/cli/purge.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from service.cli.api import Api
from service.cli.options import DEFAULT_URL, ApiKey, ApiUrl, Json
from service.cli.output import emit_json, guarded, stderr, stdout

app = typer.Typer(
    help="List, inspect, retry, cancel and purge jobs.",
    epilog="Examples:\n\n  conveyor jobs list --status failed\n\n  conveyor jobs show 5f0c…\n\n"
           "  conveyor jobs retry 5f0c…\n\n  conveyor jobs list --kind video --json | jq '.items[].id'\n\n"
           "  conveyor jobs purge --older-than 7 --dry-run",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(help="The job's id.")]


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def jobs_table(jobs: list[dict], *, tenants: bool = False, title: str | None = None) -> Table:
    """Jobs one per row; with `tenants`, whose each is (views across tenants)."""
    table = Table("id", *(["tenant"] if tenants else []), "kind", "status", "progress", "stage", "created", title=title)
    for job in jobs:
        table.add_row(job["id"], *([job["tenant"]] if tenants else []), job["kind"], job["status"],
                      f"{100 * float(job.get('progress') or 0):.0f}%", job.get("stage") or "-",
                      _when(job.get("created_at")))
    return table


def _show_job(job: dict) -> None:
    console = stdout()
    for name in ("id", "kind", "status", "stage", "attempts", "created_at", "updated_at", "finished_at"):
        console.print(f"[bold]{name:>11}[/] {job.get(name) if job.get(name) is not None else '-'}")
    console.print(f"[bold]{'progress':>11}[/] {100 * float(job.get('progress') or 0):.0f}%")
    if job.get("stages"):
        table = Table("stage", "status", "started", "finished")
        for stage in job["stages"]:
            table.add_row(stage["name"], stage["status"], _when(stage.get("started_at")), _when(stage.get("finished_at")))
        console.print(table)
    for name in ("error", "metadata", "result"):
        if job.get(name):
            console.print(f"[bold]{name}[/]")
            console.print_json(json.dumps(job[name], default=str))


@app.command("list")
@guarded
def list_jobs(
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind (document, video, …).")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many, newest first.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Where the previous page ended (its next_cursor).")] = None,
    url: ApiUrl = DEFAULT_URL, key: ApiKey = None, json_output: Json = False,
) -> None:
    """List your jobs, newest first."""
    params = {name: value for name, value in
              {"kind": kind, "status": status, "limit": limit, "cursor": cursor}.items() if value is not None}
    with Api(url, key) as api:
        page = api.call("GET", "/v1/jobs", params=params).json()
    if json_output:
        emit_json(page)
        return
    stdout().print(jobs_table(page["items"]))
    if page.get("next_cursor"):
        stderr().print(f"more: --cursor {page['next_cursor']}")


@app.command()
@guarded
def show(job_id: JobId, url: ApiUrl = DEFAULT_URL, key: ApiKey = None, json_output: Json = False) -> None:
    """Show one job: status, stages, error or result."""
    with Api(url, key) as api:
        job = api.job(job_id).json()
    if json_output:
        emit_json(job)
    else:
        _show_job(job)


def _steer(action: str, job_id: str, url: str, key: str | None, json_output: bool) -> None:
    with Api(url, key) as api:
        job = api.call("POST", f"/v1/jobs/{job_id}/{action}").json()
    if json_output:
        emit_json(job)
    else:
        typer.echo(f"{job['id']} {job['status']}")


@app.command()
@guarded
def retry(job_id: JobId, url: ApiUrl = DEFAULT_URL, key: ApiKey = None, json_output: Json = False) -> None:
    """Run a failed or cancelled job again."""
    _steer("retry", job_id, url, key, json_output)


@app.command()
@guarded
def cancel(job_id: JobId, url: ApiUrl = DEFAULT_URL, key: ApiKey = None, json_output: Json = False) -> None:
    """Cancel a job; it ends `cancelled` (a running one at its next checkpoint)."""
    _steer("cancel", job_id, url, key, json_output)
