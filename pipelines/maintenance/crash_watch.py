"""The crash watch: a dead worker's jobs run again within a second, not once its heartbeat
expires.

Every WATCH_SECONDS one worker of the queue (whoever takes the tick's lock in Redis) looks
at the workers registered by their heartbeats (session.registry_key). A worker is dead when
- its advisory lock is free and no Redis connection bears its name: its kernel closed its
  sockets, so it died (session.py); found within a tick of a kill -9;
- or its heartbeat key expired (WORKER_DEAD_AFTER_SECONDS): dead, frozen or cut off from
  Redis; a partition closes no connection, so only silence tells.
Its running jobs go back to the queue at once (handback.py; fenced, so a worker presumed
dead that comes back cannot overwrite the next attempt) and it leaves the registry until it
beats again.

Guards against handing back the jobs of live workers (docs/design.md, "Dead workers"): a
PostgreSQL restart or failover frees every lock at once, but the workers' Redis connections
stay; a Redis restart drops every connection and may lose heartbeats, so a missing
connection counts only once Redis has been up for two of the workers' checks (each live
worker has named a connection again by then), a missing heartbeat only once it has been up
for WORKER_DEAD_AFTER_SECONDS.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from redis.exceptions import RedisError

from pipelines.maintenance.handback import CONNECTIONS_CLOSED, HEARTBEAT_STOPPED, hand_back
from pipelines.maintenance.session import CHECK_SECONDS, LOCK_CLASS, lock_key, presence_name, registry_key
from pipelines.resources import Resources
from service import ledger
from service.databases.pools import CONNECTION_ERRORS
from service.errors import DependencyUnavailable
from service.queue import heartbeats

log = structlog.get_logger("conveyor.crash_watch")

WATCH_SECONDS = 0.25
LOCK_KEY = "conveyor:crash-watch"
HELD_LOCKS = """
SELECT objid::bigint AS key FROM pg_locks
WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


async def watch_forever(resources: Resources) -> None:
    """One worker of the queue a tick; the tick's lock expires before the next."""
    lock = f"{LOCK_KEY}:{resources.settings.queue_name}"
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        try:
            if await resources.redis.set(lock, resources.worker_id, nx=True, px=int(WATCH_SECONDS * 900)):
                await watch(resources)
        except (RedisError, DependencyUnavailable, asyncpg.PostgresError, *CONNECTION_ERRORS) as exc:
            log.warning("crash watch could not look", error=type(exc).__name__)


async def watch(resources: Resources) -> dict[str, str]:
    """One look at the registered workers: why each one found dead is (worker id → reason)."""
    redis = resources.redis
    registry = registry_key(resources.settings.queue_name)
    registered = {_text(worker) for worker in await redis.zrange(registry, 0, -1)} - {resources.worker_id}
    if not registered:
        return {}
    silent = registered - await heartbeats.alive(redis, registered)
    async with resources.db.write() as conn:  # the locks are on the primary
        held = {row["key"] for row in await conn.fetch(HELD_LOCKS, LOCK_CLASS)}
    unlocked = {worker for worker in registered if lock_key(worker) not in held}
    if not (silent or unlocked):
        return {}
    up_for = (await redis.info("server"))["uptime_in_seconds"]
    if up_for < 2 * CHECK_SECONDS:  # each live worker names a connection again within a check
        unlocked = set()
    if up_for < resources.settings.worker_dead_after_seconds:  # and beats again within this
        silent = set()
    connected = await _connected_names(resources) if unlocked else set()
    for worker in sorted(worker for worker in unlocked if presence_name(worker) in connected):
        log.warning("a worker's database session ended, but it is still connected to Redis: alive", worker=worker)
    dead = {worker: CONNECTIONS_CLOSED for worker in unlocked if presence_name(worker) not in connected}
    dead.update({worker: HEARTBEAT_STOPPED for worker in silent - dead.keys()})
    if not dead:
        return {}
    async with resources.db.write() as conn:
        running = await ledger.running_jobs_of(conn, dead)
    for reason in (CONNECTIONS_CLOSED, HEARTBEAT_STOPPED):
        await hand_back(resources, [job for job in running if dead[job["worker_id"]] == reason], reason=reason)
    await redis.zrem(registry, *dead)
    log.info("dead workers found", workers=dead)
    return dead


async def _connected_names(resources: Resources) -> set[str]:
    return {client.get("name", "") for client in await resources.redis.client_list(_type="normal")}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
