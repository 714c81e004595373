"""`conveyor stats`: event counts per day and type, as of the last hourly aggregation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from service.cli.api import Api
from service.cli.options import DEFAULT_URL, ApiKey, ApiUrl, Json
from service.cli.output import emit_json, guarded, stderr, stdout

EXAMPLES = """Examples:

  conveyor stats

  conveyor stats --from 2024-05-01 --to 2024-05-31 --type signup

  conveyor stats --type page_view --json | jq '[.items[].count] | add'

Counts are per UTC day and are as fresh as the last hourly aggregation."""

def stats(
    first_day: Annotated[datetime | None, typer.Option(
        "--from", formats=["%Y-%m-%d"], show_default=False, help="First UTC day (default: 29 days before --to)."
    )] = None,
    last_day: Annotated[datetime | None, typer.Option(
        "--to", formats=["%Y-%m-%d"], show_default=False, help="Last UTC day, included (default: today)."
    )] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Only events of this type.")] = None,
    url: ApiUrl = DEFAULT_URL, key: ApiKey = None, json_output: Json = False,
) -> None:
    """Show your analytics events counted per UTC day and type."""
    params = {name: value for name, value in {
        "from": first_day and first_day.date().isoformat(),
        "to": last_day and last_day.date().isoformat(),
        "type": event_type,
    }.items() if value}
    with Api(url, key) as api:
        body = api.call("GET", "/v1/stats", params=params).json()
    if json_output:
        emit_json(body)
        return
    if not body["items"]:
        stderr().print(f"no events counted from {body['from']} to {body['to']}")
        return
    table = Table("day", "type", "count", title=f"events {body['from']} … {body['to']}")
    for item in body["items"]:
        table.add_row(item["day"], item["type"], str(item["count"]))
    table.add_section()
    table.add_row("total", "", str(sum(item["count"] for item in body["items"])))
    stdout().print(table)


command = guarded(stats)
