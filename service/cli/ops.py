"""`conveyor workers` and `conveyor queues`: what Redis says about workers and backlog."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.table import Table

from service.heartbeats import WORKERS_KEY, worker_key
from service import monitoring, queue
from service.cli import targets
from service.cli.options import DEFAULT_DATA_DIR, DataDir, Json, RedisUrl
from service.cli.output import ago, emit_json, guarded, stdout
from service.config import Settings, load_settings

MAX_WORKERS_SHOWN = 200


async def read_workers(url: str) -> list[dict]:
    """Every worker seen lately, newest beat first; `alive` is false once its key expired."""
    redis = queue.connect(url)
    try:
        seen = await redis.zrevrange(WORKERS_KEY, 0, MAX_WORKERS_SHOWN - 1, withscores=True)
        states = await redis.mget([worker_key(member.decode()) for member, _ in seen]) if seen else []
    finally:
        await redis.aclose()
    now = time.time()
    workers = []
    for (member, seen_at), state in zip(seen, states):
        entry = json.loads(state) if state else {"id": member.decode()}
        entry.update(alive=state is not None, seen_ago=now - seen_at)
        workers.append(entry)
    return workers


async def read_queues(url: str, settings: Settings, names: list[str]) -> list[dict]:
    """Per arq queue: jobs waiting (due, not running), running, deferred (due later: a
    send_at, a retry's backoff), and how long the oldest waiting one has waited."""
    redis = queue.connect(url)
    try:
        states = await monitoring.queue_states(redis, settings, names=names)
    finally:
        await redis.aclose()
    return [{"queue": state.name, "due": state.waiting, "running": state.running, "deferred": state.scheduled,
             "oldest_age": state.oldest_age if state.waiting else None} for state in states]


def workers(redis_url: RedisUrl = None, data_dir: DataDir = DEFAULT_DATA_DIR, json_output: Json = False) -> None:
    """List the workers and what they run, from their heartbeats in Redis.

    Example: conveyor workers --json
    """
    with targets.redis_url(redis_url, data_dir) as url:
        found = asyncio.run(read_workers(url))
    if json_output:
        emit_json(found)
        return
    table = Table("id", "host", "pid", "queue", "running", "up for", "last beat", "state")
    for worker in found:
        started = worker.get("started_at")
        table.add_row(worker["id"], worker.get("host", "-"), str(worker.get("pid", "-")), worker.get("queue", "-"),
                      str(len(worker.get("jobs", []))), ago(time.time() - started) if started else "-",
                      ago(worker["seen_ago"]) + " ago", "alive" if worker["alive"] else "gone")
    stdout().print(table)


def queues(
    names: Annotated[list[str] | None, typer.Option("--queue", help="A queue to show (repeatable); "
                                                    "default: QUEUE_NAME and the KIND_QUEUES targets.")] = None,
    redis_url: RedisUrl = None, data_dir: DataDir = DEFAULT_DATA_DIR, json_output: Json = False,
) -> None:
    """Show each queue's backlog: jobs due and waiting, running, deferred, the oldest waiting one's wait.

    Example: conveyor queues --queue conveyor:video --json
    """
    settings = load_settings()
    names = names or monitoring.queue_names(settings)
    with targets.redis_url(redis_url, data_dir) as url:
        rows = asyncio.run(read_queues(url, settings, names))
    if json_output:
        emit_json(rows)
        return
    table = Table("queue", "due", "running", "deferred", "oldest due waits")
    for row in rows:
        table.add_row(row["queue"], str(row["due"]), str(row["running"]), str(row["deferred"]),
                      ago(row["oldest_age"]))
    stdout().print(table)


workers_command = guarded(workers)
queues_command = guarded(queues)
