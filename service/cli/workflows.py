"""`conveyor workflows …`: submit, list, show and cancel workflows (`/v1/workflows`)
through the HTTP API, with the client apps use."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, TextIO

import click

from service.cli.options import CommandGroup, json_option, key_option, url_option
from service.cli.output import FAILED, TIMED_OUT, CliError, emit_json, guarded, new_table, short_id, stderr, stdout

if TYPE_CHECKING:
    from conveyor.client import Client, Workflow

app = CommandGroup(
    name="workflows",
    help="Submit, list, show and cancel workflows: steps of jobs run in order.",
    epilog="Examples:\n\n  conveyor workflows submit pipeline.json --wait\n\n  conveyor workflows list --status failed\n\n"
    "  conveyor workflows show 5f0c1a2b\n\n  conveyor workflows cancel 5f0c1a2b\n\n"
    "A workflow is named by its id, or the start of it as lists show it (among your latest "
    "200 workflows). FILE holds the body of POST /v1/workflows (docs/api.md).",
)

SEARCHED = 200  # latest workflows an id prefix is looked for among (the API's largest page)

workflow_id_argument = click.argument(
    "workflow_id", help="The workflow's id, or its start as `conveyor workflows list` shows it."
)


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def workflow_id_of(api: Client, given: str) -> str:
    """The id of the workflow `given` names: a whole id, or the start of one that exactly
    one of the tenant's latest SEARCHED workflows has."""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        pass
    found = [item.id for item in api.workflows(limit=SEARCHED).items if item.id.startswith(given.lower())]
    if len(found) != 1:
        raise CliError(f"{len(found) or 'no'} of your latest workflows have ids starting with {given!r}")
    return found[0]


def _counts(workflow: Workflow) -> str:
    """How far its steps are: `2/5 succeeded`, and any failed."""
    statuses = [step.status for step in workflow.steps.values()]
    failed = statuses.count("failed")
    return f"{statuses.count('succeeded')}/{len(statuses)} succeeded" + (f", {failed} failed" if failed else "")


def _show(workflow: Workflow) -> None:
    console, shown = stdout(), workflow.to_dict()
    for name in ("id", "status", "created_at", "finished_at"):
        console.print(f"[bold]{name:>11}[/] {shown[name] or '-'}")
    table = new_table("step", "status", "jobs", "first job", "error")
    for name, step in workflow.steps.items():
        error = f"{step.error.type}: {step.error.message}" if step.error else ""
        table.add_row(name, step.status, str(len(step.jobs)), short_id(step.jobs[0]) if step.jobs else "-", error)
    console.print(table)


@app.command("list")
@click.option("--status", help="queued, running, succeeded, failed or cancelled.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, help="At most this many, newest first.")
@click.option("--cursor", help="Where the previous page ended (its next_cursor).")
@url_option
@key_option
@json_option
@guarded
def list_workflows(
    status: str | None, limit: int, cursor: str | None, url: str, key: str | None, json_output: bool
) -> None:
    """List your workflows, newest first, with how far their steps are."""
    from service.cli.api import connect

    with connect(url, key) as api:
        page = api.workflows(status=status, limit=limit, cursor=cursor)
    if json_output:
        emit_json(page.to_dict())
        return
    table = new_table("id", "status", "steps", "created", "finished")
    for workflow in page.items:
        shown = workflow.to_dict()
        table.add_row(
            short_id(workflow.id),
            workflow.status,
            _counts(workflow),
            _when(shown["created_at"]),
            _when(shown["finished_at"]),
        )
    stdout().print(table)
    if page.next_cursor:
        stderr().print(f"more: --cursor {page.next_cursor}")


@app.command()
@workflow_id_argument
@url_option
@key_option
@json_option
@guarded
def show(workflow_id: str, url: str, key: str | None, json_output: bool) -> None:
    """Show one workflow: its status and each step's status, jobs and error."""
    from service.cli.api import connect

    with connect(url, key) as api:
        workflow = api.get_workflow(workflow_id_of(api, workflow_id))
    if json_output:
        emit_json(workflow.to_dict())
    else:
        _show(workflow)


@app.command()
@workflow_id_argument
@url_option
@key_option
@json_option
@guarded
def cancel(workflow_id: str, url: str, key: str | None, json_output: bool) -> None:
    """Cancel a workflow: no step starts any more, waiting and running steps end cancelled."""
    from service.cli.api import connect

    with connect(url, key) as api:
        workflow = api.cancel_workflow(workflow_id_of(api, workflow_id))
    if json_output:
        emit_json(workflow.to_dict())
    else:
        click.echo(f"{workflow.id} {workflow.status}")


def _body(file: TextIO) -> dict:
    """The request body FILE holds: `{steps, callback_url?, metadata?}` as JSON."""
    try:
        body = json.loads(file.read())
    except ValueError as exc:
        raise CliError(f"{file.name} is not JSON: {exc}", code=2) from None
    if not isinstance(body, dict) or not isinstance(body.get("steps"), dict):
        raise CliError(f'{file.name} must hold a JSON object with "steps" (the body of POST /v1/workflows)', code=2)
    return body


@app.command(
    epilog="Exit status with --wait: 0 if the workflow succeeded, 1 if it failed or was cancelled, "
    "124 if --timeout passed first."
)
@click.argument("file", type=click.File("r"), help="A JSON file with the body of POST /v1/workflows; - for stdin.")
@click.option("--wait", is_flag=True, help="Wait until the workflow ends (told by its event stream), then show it.")
@click.option("--idempotency-key", help="Send twice, get one workflow.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600.0, help="Seconds --wait waits at most.")
@url_option
@key_option
@json_option
@guarded
def submit(
    file: TextIO,
    wait: bool,
    idempotency_key: str | None,
    timeout: float,
    url: str,
    key: str | None,
    json_output: bool,
) -> None:
    """Submit the workflow FILE describes and print its id."""
    from service.cli.api import connect

    body = _body(file)
    options: dict[str, Any] = {name: body[name] for name in ("callback_url", "metadata") if name in body}
    unknown = sorted(set(body) - {"steps", "callback_url", "metadata"})
    if unknown:
        raise CliError(f"{file.name}: unknown field(s) {', '.join(unknown)}", code=2)
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    with connect(url, key) as api:
        workflow = api.submit_workflow(body["steps"], **options)
        if not json_output:
            click.echo(workflow.id)
        if wait:
            try:
                workflow = api.wait_workflow(workflow, timeout=timeout)
            except TimeoutError as exc:
                raise CliError(str(exc), code=TIMED_OUT) from None
    if json_output:
        emit_json(workflow.to_dict())
    elif wait:
        _show(workflow)
    if wait and not workflow.succeeded:
        raise CliError(f"workflow {workflow.id} {workflow.status}", code=FAILED)
