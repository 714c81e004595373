"""How many jobs a tenant has queued, for its quota and for fair ordering, without counting
the ledger on every admission.

Counting a tenant's queued jobs in PostgreSQL reads one index entry per job, so a tenant
with thousands queued would make each of its uploads cost thousands of reads. Instead the
count lives in Redis for `COUNT_TTL_MS`: taken from the ledger when it is missing (capped
at the quota), then raised by each admission. Jobs that leave the queue meanwhile are not
subtracted, so the count can run ahead of the ledger by up to one TTL of admissions, and
it is corrected when it expires (one ledger count for all the admissions that find it
missing together). If Redis is unreachable, admissions go on unordered and
unlimited: availability over strictness, as for the rate limits. Concurrent requests'
admissions share one script (`service.batching`), counted in the order they reach Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.batching import ON_THE_WAY_IN_FLIGHT, Batcher
from service.databases.database import Database

log = structlog.get_logger("conveyor.backlog")

COUNT_TTL_MS = 1000
PREFIX = "conveyor:queued:"

# The tenant's count before this job, counting the job if that is under the quota (ARGV[1]);
# -1 when there is no count. With ARGV[3], the ledger's count, start one first (unless
# another process just did). DECR and INCR never touch a missing key: a count without a
# TTL would never be corrected.
ADMIT = """
if ARGV[3] ~= '' then redis.call('set', KEYS[1], ARGV[3], 'px', ARGV[2], 'nx') end
local queued = redis.call('get', KEYS[1])
if not queued then return -1 end
queued = tonumber(queued)
if queued < tonumber(ARGV[1]) then redis.call('incr', KEYS[1]) end
return queued
"""
# ADMIT without a start, for many admissions at once: KEYS[i] with quota ARGV[i + 1].
ADMIT_MANY = """
local before = {}
for i = 1, #KEYS do
  local queued = redis.call('get', KEYS[i])
  if not queued then
    before[i] = -1
  else
    queued = tonumber(queued)
    if queued < tonumber(ARGV[i + 1]) then redis.call('incr', KEYS[i]) end
    before[i] = queued
  end
end
return before
"""
# ADMIT for ARGV[4] jobs at once (a batch): all of them under the quota, or none counted.
ADMIT_BATCH = """
if ARGV[3] ~= '' then redis.call('set', KEYS[1], ARGV[3], 'px', ARGV[2], 'nx') end
local queued = redis.call('get', KEYS[1])
if not queued then return -1 end
queued = tonumber(queued)
if queued + tonumber(ARGV[4]) <= tonumber(ARGV[1]) then redis.call('incrby', KEYS[1], ARGV[4]) end
return queued
"""
WITHDRAW = """
if redis.call('exists', KEYS[1]) == 1 then redis.call('decrby', KEYS[1], ARGV[1]) end
"""


@dataclass(frozen=True, eq=False)  # one admission each, even for the same tenant and quota
class _Admission:
    tenant_id: uuid.UUID
    quota: int


class Backlog:
    def __init__(self, redis: Redis, db: Database) -> None:
        self.db = db
        self._admit = redis.register_script(ADMIT)
        self._admit_many = redis.register_script(ADMIT_MANY)
        self._admit_batch = redis.register_script(ADMIT_BATCH)
        self._withdraw = redis.register_script(WITHDRAW)
        self._admissions: Batcher[_Admission, int] = Batcher(
            self._count_many, key=lambda admission: admission, in_flight=ON_THE_WAY_IN_FLIGHT
        )
        self._counting: dict[uuid.UUID, asyncio.Future[int]] = {}

    async def admit(self, tenant_id: uuid.UUID, quota: int) -> int | None:
        """Count one more queued job for the tenant: how many it had before (0 when Redis
        cannot say), or None, counting nothing, if that already reaches `quota`."""
        try:
            before = await self._admissions.submit(_Admission(tenant_id, quota))
            if before < 0:
                queued = await asyncio.shield(self._ledger_count(tenant_id, quota))
                before = await self._admit(keys=[f"{PREFIX}{tenant_id}"], args=[quota, COUNT_TTL_MS, queued])
        except (RedisError, OSError) as exc:
            log.warning("tenant backlog unknown (Redis): not ordered or limited", error=type(exc).__name__)
            return 0
        return before if before < quota else None

    async def admit_batch(self, tenant_id: uuid.UUID, quota: int, count: int) -> int | None:
        """`admit` for `count` jobs submitted together: all of them, or None (nothing counted)
        if they would take the tenant past `quota`."""
        key = f"{PREFIX}{tenant_id}"
        try:
            before = await self._admit_batch(keys=[key], args=[quota, COUNT_TTL_MS, "", count])
            if before < 0:
                queued = await asyncio.shield(self._ledger_count(tenant_id, quota))
                before = await self._admit_batch(keys=[key], args=[quota, COUNT_TTL_MS, queued, count])
        except (RedisError, OSError) as exc:
            log.warning("tenant backlog unknown (Redis): not ordered or limited", error=type(exc).__name__)
            return 0
        return before if before + count <= quota else None

    def _ledger_count(self, tenant_id: uuid.UUID, quota: int) -> asyncio.Future[int]:
        """The tenant's queued jobs in the ledger, counted once for all the admissions that
        find no count at the same time (a burst of uploads when it expires would otherwise
        each count the same thousands of index entries)."""
        counting = self._counting.get(tenant_id)
        if counting is None:
            counting = self._counting[tenant_id] = asyncio.ensure_future(self._count_ledger(tenant_id, quota))
            counting.add_done_callback(lambda _: self._counting.pop(tenant_id, None))
        return counting

    async def _count_ledger(self, tenant_id: uuid.UUID, quota: int) -> int:
        async with self.db.read(follow=(f"tenant:{tenant_id}",)) as conn:
            return await queued_jobs(conn, tenant_id, quota)

    async def _count_many(self, admissions: Sequence[_Admission]) -> list[int]:
        """Each admission's count before it, or -1 where the tenant has no count yet."""
        return await self._admit_many(
            keys=[f"{PREFIX}{admission.tenant_id}" for admission in admissions],
            args=[COUNT_TTL_MS, *(admission.quota for admission in admissions)],
        )

    async def withdraw(self, tenant_id: uuid.UUID, count: int = 1) -> None:
        """Admitted jobs (`count`) that were not recorded after all."""
        try:
            await self._withdraw(keys=[f"{PREFIX}{tenant_id}"], args=[count])
        except (RedisError, OSError):
            pass  # the count expires soon anyway


async def queued_jobs(conn, tenant_id: uuid.UUID, limit: int) -> int:
    """The tenant's queued jobs in the ledger, counted up to `limit`."""
    return await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = $1 AND status = 'queued' LIMIT $2) AS queued",
        tenant_id,
        limit,
    )
