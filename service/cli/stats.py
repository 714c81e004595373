"""`conveyor stats`: event counts per day and type, as of the last aggregation, and when
the next one counts what came since."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from service.cli.options import json_option, key_option, url_option
from service.cli.output import ago, emit_json, guarded, new_table, stderr, stdout

EXAMPLES = """Examples:

  conveyor stats

  conveyor stats --from 2024-05-01 --to 2024-05-31 --type signup

  conveyor stats --type page_view --json | jq '[.items[].count] | add'

Counts are per UTC day and are as fresh as the last aggregation (hourly by default):
events sent since are counted at the next one, which the output names."""

DAY = click.DateTime(formats=["%Y-%m-%d"])


def next_count(body: dict) -> str:
    """When the API says events are next counted, said for a person."""
    if body.get("next_aggregation_at") is None:
        return "event counting is off (SCHEDULE_AGGREGATE_HOURLY and SCHEDULE_AGGREGATE_DAILY)"
    at = datetime.fromisoformat(body["next_aggregation_at"])
    wait = max((at - datetime.now(UTC)).total_seconds(), 0)
    return f"events are counted next at {at:%Y-%m-%d %H:%M} UTC (in {ago(wait)})"


@click.command(epilog=EXAMPLES)
@click.option(
    "--from", "first_day", type=DAY, metavar="YYYY-MM-DD", help="First UTC day (default: 29 days before --to)."
)
@click.option("--to", "last_day", type=DAY, metavar="YYYY-MM-DD", help="Last UTC day, included (default: today).")
@click.option("--type", "event_type", help="Only events of this type.")
@url_option
@key_option
@json_option
@guarded
def stats(
    first_day: datetime | None,
    last_day: datetime | None,
    event_type: str | None,
    url: str,
    key: str | None,
    json_output: bool,
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
