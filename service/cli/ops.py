"""`conveyor workers` and `conveyor queues`: what Redis says about workers and backlog."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.cli import targets
from service.cli.options import data_dir_option, json_option, redis_url_option
from service.cli.output import ago, emit_json, guarded, new_table, stdout

if TYPE_CHECKING:
    from rich.table import Table

    from service.config import Settings

MAX_WORKERS_SHOWN = 200
QUEUE_COLUMNS = ("queue", "queued", "running", "scheduled", "oldest queued")


async def read_workers(url: str) -> list[dict]:
    """Every worker seen lately, newest beat first; `alive` is false once its key expired."""
    from service import queue
    from service.queue.heartbeats import WORKERS_KEY, worker_key

    redis = queue.connect(url)
    try:
        seen = await redis.zrevrange(WORKERS_KEY, 0, MAX_WORKERS_SHOWN - 1, withscores=True)
        states = await redis.mget([worker_key(member.decode()) for member, _ in seen]) if seen else []
    finally:
        await redis.aclose()
    now = time.time()
    workers = []
    for (member, seen_at), state in zip(seen, states, strict=True):
        entry = json.loads(state) if state else {"id": member.decode()}
        entry.update(alive=state is not None, seen_ago=now - seen_at)
        workers.append(entry)
    return workers


async def read_queues(url: str, settings: Settings, names: list[str] | None = None) -> list[dict]:
    """Per arq queue (default: every queue of the deployment), its numbers as
    service.telemetry.monitoring.QueueState names them."""
    from dataclasses import asdict

    from service import queue
    from service.telemetry import monitoring

    redis = queue.connect(url)
    try:
        states = await monitoring.queue_states(redis, settings, names=names)
    finally:
        await redis.aclose()
    return [asdict(state) for state in states]


def queues_table(rows: list[dict], title: str | None = None) -> Table:
    """Queues one per row, in the words `queues`, `watch` and the dashboard share."""
    table = new_table(*QUEUE_COLUMNS, title=title, title_justify="left")
    for row in rows:
        table.add_row(
            row["name"],
            str(row["queued"]),
            str(row["running"]),
            str(row["scheduled"]),
            ago(row["oldest_age"]) if row["queued"] else "-",
        )
    return table


@click.command()
@redis_url_option
@data_dir_option
@json_option
@guarded
def workers(redis_url: str | None, data_dir: Path, json_output: bool) -> None:
    """List the workers and what they run, from their heartbeats in Redis.

    Example: conveyor workers --json
    """
    import asyncio

    with targets.redis_url(redis_url, data_dir) as url:
        found = asyncio.run(read_workers(url))
    if json_output:
        emit_json(found)
        return
    table = new_table("id", "host", "pid", "queue", "running", "up for", "last beat", "state")
    for worker in found:
        started = worker.get("started_at")
        table.add_row(
            worker["id"],
            worker.get("host", "-"),
            str(worker.get("pid", "-")),
            worker.get("queue", "-"),
            str(len(worker.get("jobs", []))),
            ago(time.time() - started) if started else "-",
            ago(worker["seen_ago"]) + " ago",
            "alive" if worker["alive"] else "gone",
        )
    stdout().print(table)


@click.command()
@click.option(
    "--queue",
    "names",
    multiple=True,
    help="A queue to show (repeatable); default: QUEUE_NAME, the KIND_QUEUES targets and the queues live workers use.",
)
@redis_url_option
@data_dir_option
@json_option
@guarded
def queues(names: tuple[str, ...], redis_url: str | None, data_dir: Path, json_output: bool) -> None:
    """Show each queue's backlog: jobs queued, running and scheduled, the oldest one's wait.

    Queued: due now, waiting for a worker. Scheduled: queued for later (a send_at, a
    retry's backoff). The same words as in `conveyor watch` and the dashboard.

    Example: conveyor queues --queue conveyor:video --json
    """
    import asyncio

    from service.config import load_settings

    settings = load_settings()
    with targets.redis_url(redis_url, data_dir) as url:
        rows = asyncio.run(read_queues(url, settings, list(names) or None))
    if json_output:
        emit_json(rows)
        return
    stdout().print(queues_table(rows))
