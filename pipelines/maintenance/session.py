"""A worker's session: an advisory lock in PostgreSQL and a named connection to Redis,
held for the worker's life so that its peers know the moment it dies.

A process that dies, kill -9 included, has its sockets closed by its kernel: PostgreSQL
ends its session, which frees its session-level advisory lock, and Redis drops its
connection, whose name leaves CLIENT LIST. The crash watch (crash_watch.py) reads both.
Either alone would lie when its server restarts or fails over (every session ends at
once), so a worker counts as dead only when both are gone, and a live worker makes each
again as soon as it drops. Its heartbeat registers it with the watch (`registry_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import asyncpg
import structlog
from redis.exceptions import RedisError

from pipelines.resources import Resources
from service import queue
from service.databases.pools import CONNECTION_ERRORS
from service.errors import DependencyUnavailable

log = structlog.get_logger("conveyor.session")

#: The first key of every worker's two-key advisory lock ("Conv"): apps' locks stay apart.
LOCK_CLASS = 0x436F6E76
#: How often both connections are checked and, if lost, made again.
CHECK_SECONDS = 2.0
LOST = (DependencyUnavailable, asyncpg.PostgresError, *CONNECTION_ERRORS)
#: Sessions of ours the server still holds (a partition it has not noticed): ended, so
#: that the lock is ours again. The name guards against a worker whose key collides.
END_STALE = """
SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.pid <> pg_backend_pid() AND a.application_name = $3
"""


def lock_key(worker_id: str) -> int:
    """The second key of the worker's lock: 31 bits of a hash of its id (`objid` in pg_locks)."""
    return int.from_bytes(hashlib.blake2b(worker_id.encode(), digest_size=4).digest()) & 0x7FFFFFFF


def presence_name(worker_id: str) -> str:
    """The name of the worker's Redis connection (worker ids hold no spaces)."""
    return f"conveyor-worker:{worker_id}"


def registry_key(queue_name: str) -> str:
    """The workers of a queue the crash watch looks after, scored by their last beat."""
    return f"conveyor:sessions:{queue_name}"


class Session:
    """One worker's lock and named connection."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.key = lock_key(resources.worker_id)
        self.application = f"conveyor-session {resources.worker_id}"[:63]  # what PostgreSQL keeps
        self.presence = queue.connect(resources.settings.redis_url, client_name=presence_name(resources.worker_id))
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    async def open(self) -> None:
        """Both taken before the worker first beats: registered, it must not look dead. One
        that cannot be had now (its server is down) is taken by `hold_forever` later; the
        other keeps the worker alive meanwhile."""
        await self._keep_both()

    async def hold_forever(self) -> None:
        """Check both every CHECK_SECONDS, and the lock at once when its connection ends."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_SECONDS):  # not wait_for: on 3.11 it can swallow a cancel
                    await self._lost.wait()
            self._lost.clear()
            await self._keep_both()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.terminate()  # the lock goes with the session, even if the server is gone
        await self.presence.aclose()

    async def _keep_both(self) -> None:
        try:
            await self._keep_lock()
        except LOST as exc:
            log.warning("worker lock not held; taking it again", error=type(exc).__name__)
        try:
            await self.presence.ping()  # reconnects, named, if the connection dropped
        except (RedisError, OSError) as exc:
            log.warning("worker's named redis connection lost; connecting again", error=type(exc).__name__)

    async def _keep_lock(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.fetchval("SELECT 1", timeout=CHECK_SECONDS)
                return
            except LOST:
                self._conn.terminate()  # silent (a partition): start afresh
                raise
        self._conn = None
        conn = await self.resources.db.dedicated(self.application)
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, self.key):
                await conn.fetch(END_STALE, LOCK_CLASS, self.key, self.application)
                await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, self.key, timeout=CHECK_SECONDS)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(lambda _: self._lost.set())
        self._conn = conn
