"""Connection pools for the primary and its replicas, and which one a unit of work uses.

Writes go to the primary inside one transaction (`db.transaction()`); read-only units of
work declare themselves with `db.read(...)`, which opens a READ ONLY transaction. A read
may be served by a replica, but only one that has replayed past the last write the
reader must see (read-your-writes with LSNs): writers name what they touched
(`track=("job:…", "tenant:…")`), readers name what they follow (`follow=…`), and the
write positions are shared through Redis (`service.databases.consistency`). With no replica
configured every read uses the primary and nothing is tracked.

`DATABASE_URL` may name several hosts (service/databases/pgurl.py): every new connection to the
primary goes to the host that takes writes now, so once a failover has broken the old
primary's connections the pool refills on the promoted standby, with no restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.config import Settings
from service.databases import consistency
from service.databases.pools import (
    CONNECTION_ERRORS,
    UNUSABLE,
    SessionUnavailable,
    as_connection,
    close_pool,
    connect_primary,
    create_pool,
    read_only_session,
)
from service.databases.replicas import DatabaseAddress, ReplicaSet, ReplicaUnavailable
from service.errors import DependencyUnavailable
from service.telemetry.metrics import DB_READ_FALLBACKS, DB_READS

log = structlog.get_logger("conveyor.database")

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
# The insert position, not the write position: with asynchronous commit the commit record
# may still sit in WAL buffers, past what pg_current_wal_lsn() reports.
WRITE_POSITION = "SELECT pg_current_wal_insert_lsn()"


class Database:
    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        """`redis` shares write positions between processes; without it, reads that
        follow something always go to the primary."""
        self.settings = settings
        self.address = DatabaseAddress(settings.database_url)
        self.primary: asyncpg.Pool | None = None
        self.replicas = ReplicaSet(settings)
        self.positions = (
            consistency.WritePositions(redis, settings.read_your_writes_ttl)
            if redis is not None and self.replicas
            else None
        )
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        """Connect, or leave it to the first unit of work if the primary is down now:
        a process starts (and answers 503) rather than crash-looping."""
        try:
            await self._open_primary()
        except DependencyUnavailable as exc:
            log.warning("database not reachable at start; will retry on use: %s", exc)
        if self.replicas:
            await self.replicas.probe(self._primary_position)
            self.replicas.start(self._primary_position)

    async def _open_primary(self) -> asyncpg.Pool:
        async with self._opening:
            if self.primary is None:
                self.primary = await self._connect()
        return self.primary

    async def _connect(self) -> asyncpg.Pool:
        s = self.settings
        try:
            return await create_pool(s.database_url, s.primary_pool, primary=True)
        except CONNECTION_ERRORS as exc:
            raise DependencyUnavailable("database", f"{self.address.name}: {exc}") from exc

    async def dedicated(self, application_name: str) -> asyncpg.Connection:
        """A connection of its own to the primary, outside the pool, for session state a
        pooled connection must not keep (LISTEN). With several hosts in DATABASE_URL it is
        the one that is primary now: after a failover, the promoted one."""
        s = self.settings
        try:
            return await connect_primary(
                s.database_url,
                timeout=s.db_connect_timeout,
                command_timeout=s.db_statement_timeout,
                server_settings={"application_name": application_name},
            )
        except UNUSABLE as exc:
            raise DependencyUnavailable("database", f"{self.address.name}: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.replicas.close()
        if self.primary is not None:
            await close_pool(self.primary, self.settings.db_connect_timeout)
            self.primary = None

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._open_primary()
        try:
            async with pool.acquire(timeout=self.settings.db_connect_timeout) as conn:
                yield as_connection(conn)
        except CONNECTION_ERRORS as exc:
            raise DependencyUnavailable("database", type(exc).__name__) from exc

    async def _primary_position(self) -> int | None:
        """The primary's current WAL position, or None if it cannot be asked now."""
        try:
            async with self._acquire() as conn:
                return await conn.fetchval(WRITE_POSITION)
        except DependencyUnavailable:
            return None

    @asynccontextmanager
    async def transaction(self, *, track: Sequence[str] = ()) -> AsyncIterator[asyncpg.Connection]:
        """A primary connection in a transaction; `track` names what readers may follow.

        Once it has committed, the WAL position it reached is what a reader of `track`
        must see: kept in Redis, and noted for the response's consistency token.
        """
        async with self.write(track=track) as conn:
            async with conn.transaction():
                yield conn

    @asynccontextmanager
    async def write(self, *, track: Sequence[str] = ()) -> AsyncIterator[asyncpg.Connection]:
        """A primary connection outside a transaction, for a unit of work that is one
        statement (committed by itself: no BEGIN and COMMIT round trips); `track` as for
        `transaction`."""
        async with self._acquire() as conn:
            yield conn
            await self.remember(conn, track)

    async def remember(self, conn: asyncpg.Connection, track: Sequence[str]) -> int | None:
        """After a commit on `conn`: the WAL position it reached, kept for readers of `track`
        and noted for this request's consistency token. None with no replica (nothing to
        track) or when the position cannot be had."""
        if not track or not self.replicas:
            return None
        try:
            lsn = await conn.fetchval(WRITE_POSITION)
        except CONNECTION_ERRORS as exc:
            # Committed, but where it ended is unknown: readers may briefly miss it.
            log.warning("write position unknown after commit", error=type(exc).__name__, track=list(track))
            return None
        consistency.note_write(lsn)
        if self.positions is not None:
            try:
                await self.positions.remember(track, lsn)
            except REDIS_ERRORS as exc:
                log.warning("write position not shared (Redis)", error=type(exc).__name__, track=list(track))
        return lsn

    @asynccontextmanager
    async def read(
        self, *, follow: Sequence[str] = (), min_lsn: int | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a read-only transaction that sees the writes to `follow`, and
        everything up to `min_lsn` (a consistency token the client sent back)."""
        try:
            async with AsyncExitStack() as stack:  # its exit (ending the session) may fail too
                yield await self._enter_read(stack, follow, min_lsn or 0)
        except CONNECTION_ERRORS as exc:
            raise DependencyUnavailable("database", type(exc).__name__) from exc

    async def _enter_read(self, stack: AsyncExitStack, follow: Sequence[str], min_lsn: int) -> asyncpg.Connection:
        if self.replicas:
            conn, reason = await self._replica_read(stack, follow, min_lsn)
            if conn is not None:
                return conn
            DB_READ_FALLBACKS.labels(reason=reason).inc()
        pool = await self._open_primary()
        try:
            conn = await stack.enter_async_context(read_only_session(pool, self.settings.db_connect_timeout))
        except SessionUnavailable as exc:
            raise DependencyUnavailable("database", str(exc)) from exc
        DB_READS.labels(role="primary", database=self.address.label).inc()
        return conn

    async def _replica_read(
        self, stack: AsyncExitStack, follow: Sequence[str], min_lsn: int
    ) -> tuple[asyncpg.Connection | None, str | None]:
        """A replica connection for this read, or None and why the primary must serve it."""
        lsn = min_lsn
        if follow:
            if self.positions is None:
                return None, "untracked"
            try:
                lsn = max(lsn, await self.positions.required(follow))
            except REDIS_ERRORS:
                return None, "positions_unknown"
        replica, reason = await self.replicas.choose(lsn)
        if replica is None:
            return None, reason
        try:
            conn = await stack.enter_async_context(replica.reading())
        except ReplicaUnavailable:
            return None, "replica_failed"
        DB_READS.labels(role="replica", database=replica.address.label).inc()
        return conn, None

    async def check(self) -> list[dict]:
        """Health of each database, for /readyz: the primary, then each replica."""
        primary = {"role": "primary", "name": self.address.name, "region": None, "lag_bytes": 0, "lagging": False}
        try:
            async with self._acquire() as conn:
                position = await conn.fetchval(WRITE_POSITION)
            primary["reachable"] = True
        except DependencyUnavailable as exc:
            position = None
            primary.update(reachable=False, error=str(exc))
        await asyncio.gather(*(replica.probe(position) for replica in self.replicas.replicas))
        return [primary, *(replica.status() for replica in self.replicas.replicas)]
