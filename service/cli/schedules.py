"""`conveyor schedules …`: the tenant's schedules (`/v1/schedules`) through the HTTP API;
with the admin key as `--key`, the built-in ones (reminders, cleanup, …)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from service.cli.options import CommandGroup, json_option, key_option, url_option
from service.cli.output import CliError, emit_json, guarded, new_table, short_id, stdout

if TYPE_CHECKING:
    from conveyor.client import Client

app = CommandGroup(
    name="schedules",
    help="List, pause, resume and re-time your schedules (the built-in ones with the admin key).",
    epilog="Examples:\n\n  conveyor schedules list\n\n  conveyor schedules pause 5f0c1a2b\n\n"
    "  conveyor schedules set 5f0c1a2b --cron '0 4 * * *'\n\n"
    "Schedules are created with POST /v1/schedules (docs/api.md).",
)

schedule_id_argument = click.argument(
    "schedule_id", help="The schedule's id, or its start as `conveyor schedules list` shows it."
)


def _when(moment: str | None) -> str:
    """A time as a table shows it: to the minute, in the schedule's zone."""
    return moment[:16].replace("T", " ") if moment else "-"


def schedule_id_of(api: Client, given: str) -> str:
    """The id of the one schedule whose id starts with `given`."""
    found = [item["id"] for item in api.request("GET", "/v1/schedules")["items"] if item["id"].startswith(given)]
    if len(found) != 1:
        raise CliError(f"{len(found) or 'no'} schedules have ids starting with {given!r}")
    return found[0]


@app.command("list")
@url_option
@key_option
@json_option
@guarded
def list_schedules(url: str, key: str | None, json_output: bool) -> None:
    """List your schedules with their next and last runs."""
    from service.cli.api import connect

    with connect(url, key) as api:
        listed = api.request("GET", "/v1/schedules")
    if json_output:
        emit_json(listed)
        return
    table = new_table("id", "name", "kind", "cadence", "zone", "next run", "last")
    for schedule in listed["items"]:
        table.add_row(
            short_id(schedule["id"]),
            f"{schedule['name']} (built-in)" if schedule["builtin"] else schedule["name"],
            schedule["kind"],
            schedule["cron"] or f"every {schedule['every']}s",
            schedule["timezone"],
            "paused" if schedule["paused"] else _when(schedule["next_runs"][0]),
            schedule["last_status"] or "-",
        )
    stdout().print(table)


def _change(schedule_id: str, changes: dict, url: str, key: str | None, json_output: bool) -> None:
    from service.cli.api import connect

    with connect(url, key) as api:
        schedule_id = schedule_id_of(api, schedule_id)
        schedule = api.request("PATCH", f"/v1/schedules/{schedule_id}", json=changes)
    if json_output:
        emit_json(schedule)
    else:
        click.echo(f"{schedule['id']} {'paused' if schedule['paused'] else 'next run ' + schedule['next_runs'][0]}")


@app.command()
@schedule_id_argument
@url_option
@key_option
@json_option
@guarded
def pause(schedule_id: str, url: str, key: str | None, json_output: bool) -> None:
    """Pause a schedule: no jobs until it is resumed."""
    _change(schedule_id, {"paused": True}, url, key, json_output)


@app.command()
@schedule_id_argument
@url_option
@key_option
@json_option
@guarded
def resume(schedule_id: str, url: str, key: str | None, json_output: bool) -> None:
    """Resume a schedule from now on (the ticks it missed while paused are not made up)."""
    _change(schedule_id, {"paused": False}, url, key, json_output)


@app.command("set")
@schedule_id_argument
@click.option("--cron", help="A 5-field cron (m h dom mon dow), read in --timezone.")
@click.option("--every", type=click.IntRange(min=1), help="Seconds between two runs.")
@click.option("--timezone", help="The IANA time zone of --cron, e.g. Europe/Paris.")
@url_option
@key_option
@json_option
@guarded
def set_cadence(
    schedule_id: str,
    cron: str | None,
    every: int | None,
    timezone: str | None,
    url: str,
    key: str | None,
    json_output: bool,
) -> None:
    """Give a schedule a new cadence, from now on: --cron or --every."""
    if (cron is None) == (every is None):
        raise click.UsageError("give one of --cron and --every")
    changes = {"cron": cron} if cron is not None else {"every": every}
    _change(schedule_id, changes | ({"timezone": timezone} if timezone else {}), url, key, json_output)
