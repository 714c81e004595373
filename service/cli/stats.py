"""`conveyor stats`: event counts per day and type, as of the last aggregation, and when
the next one counts what came since."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from service.cli.options import DEFAULT_URL, ApiKey, ApiUrl, Json
from service.cli.output import ago, emit_json, guarded, new_table, stderr, stdout

EXAMPLES = """Examples:

  conveyor stats

  conveyor stats --from 2024-05-01 --to 2024-05-31 --type signup

  conveyor stats --type page_view --json | jq '[.items[].count] | add'

Counts are per UTC day and are as fresh as the last aggregation (hourly by default):
events sent since are counted at the next one, which the output names."""


def next_count(body: dict) -> str:
    """When the API says events are next counted, said for a person."""
    if body.get("next_aggregation_at") is None:
        return "event counting is off (SCHEDULE_AGGREGATE_HOURLY and SCHEDULE_AGGREGATE_DAILY)"
    at = datetime.fromisoformat(body["next_aggregation_at"])
    wait = max((at - datetime.now(UTC)).total_seconds(), 0)
    return f"events are counted next at {at:%Y-%m-%d %H:%M} UTC (in {ago(wait)})"


def stats(
    first_day: Annotated[
        datetime | None,
        typer.Option(
            "--from", formats=["%Y-%m-%d"], show_default=False, help="First UTC day (default: 29 days before --to)."
        ),
    ] = None,
    last_day: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], show_default=False, help="Last UTC day, included (default: today)."),
    ] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Only events of this type.")] = None,
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    json_output: Json = False,
) -> None:
    """Show your analytics events counted per UTC day and type."""
    from service.cli.api import connect

    params = {
        name: value
        for name, value in {
            "from": first_day and first_day.date().isoformat(),
            "to": last_day and last_day.date().isoformat(),
            "type": event_type,
        }.items()
        if value
    }
    with connect(url, key) as api:
        body = api.request("GET", "/v1/stats", params=params)
    if json_output:
        emit_json(body)
        return
    if not body["items"]:
        stderr().print(f"no events counted from {body['from']} to {body['to']} yet: {next_count(body)}")
        return
    table = new_table(
        "day",
        "type",
        "count",
        title=f"events {body['from']} … {body['to']}",
        caption=f"as of the last aggregation: {next_count(body)}",
    )
    for item in body["items"]:
        table.add_row(item["day"], item["type"], str(item["count"]))
    table.add_section()
    table.add_row("total", "", str(sum(item["count"] for item in body["items"])))
    stdout().print(table)


command = guarded(stats)
