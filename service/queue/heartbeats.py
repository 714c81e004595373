"""Where worker heartbeats live in Redis, and how to read them (API, CLI, reconciler).

Workers write them (pipelines/maintenance/liveness.py): a key per worker that expires
`WORKER_DEAD_AFTER_SECONDS` after its last beat, and a sorted set of worker ids.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

WORKERS_KEY = "conveyor:workers"


def worker_key(worker_id: str) -> str:
    return f"conveyor:worker:{worker_id}"


async def alive(redis: Redis, worker_ids: set[str]) -> set[str]:
    """Which of these workers still beat."""
    ids = sorted(worker_ids)
    if not ids:
        return set()
    states = await redis.mget([worker_key(worker_id) for worker_id in ids])
    return {worker_id for worker_id, state in zip(ids, states, strict=True) if state is not None}


async def live_workers(redis: Redis) -> list[dict]:
    """The heartbeat of every worker whose key has not expired, freshest first."""
    ids = [raw.decode() if isinstance(raw, bytes) else raw for raw in await redis.zrange(WORKERS_KEY, 0, -1)]
    if not ids:
        return []
    states = [json.loads(raw) for raw in await redis.mget([worker_key(worker_id) for worker_id in ids]) if raw]
    return sorted(states, key=lambda state: state["seen_at"], reverse=True)
