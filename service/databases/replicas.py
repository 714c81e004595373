"""Replicas: which one may serve a read, and how far behind and how healthy each one is.

A replica is configured as a URL in `DATABASE_URL_READ`, optionally tagged with its
region as a query parameter (`postgresql://host/db?region=eu-west`), which is removed
before connecting. Reads prefer healthy replicas of the process's own `REGION`, then any
other healthy replica; the caller falls back to the primary when none will do.

A replica that fails to connect, times out, or lags more than `replica_max_lag_bytes`
behind the primary is quarantined for `replica_quarantine_seconds`; a background probe
takes it back once it answers and has caught up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from service.config import Settings, mask
from service.databases import pgurl
from service.databases.pools import (
    CONNECTION_ERRORS,
    UNUSABLE,
    WARM_CONNECTIONS,
    SessionUnavailable,
    close_pool,
    create_pool,
    read_only_session,
)
from service.telemetry.metrics import DB_REPLICA_HEALTHY, DB_REPLICA_LAG_BYTES

log = structlog.get_logger("conveyor.replicas")

REPLAY_CACHE_SECONDS = 0.025  # how long a replica's replay position is trusted without asking again
PROBE_INTERVAL = 1.0  # seconds between two health and lag probes of the replicas
REPLAY_POSITION = """
SELECT CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), '0/0') ELSE pg_current_wal_lsn() END
"""


@dataclass(frozen=True)
class DatabaseAddress:
    url: str  # what asyncpg connects to
    region: str | None = None

    @property
    def name(self) -> str:
        """The URL with its password masked: safe for logs and /readyz."""
        return mask(self.url)

    @property
    def label(self) -> str:
        """`host:port/database` (every host, when the URL names several), the metrics label."""
        return pgurl.label(self.url)


def parse_replica_url(value: str) -> DatabaseAddress:
    """`postgresql://…/db?region=eu-west` → the URL without `region`, and the region."""
    parts = urlsplit(value)
    query = parse_qsl(parts.query, keep_blank_values=True)
    regions = [item for key, item in query if key == "region"]
    rest = urlencode([(key, item) for key, item in query if key != "region"])
    return DatabaseAddress(urlunsplit(parts._replace(query=rest)), regions[-1] if regions else None)


class ReplicaUnavailable(Exception):
    """This replica cannot serve the read now; it has been quarantined."""


class Replica:
    def __init__(self, address: DatabaseAddress, settings: Settings) -> None:
        self.address = address
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.healthy = False  # takes reads only once a probe has succeeded
        self.reachable = False
        self.quarantined_until = 0.0
        self.replay_lsn = 0
        self.replay_checked = 0.0
        self.lag_bytes: int | None = None
        self.error: str | None = None
        self._refreshing: asyncio.Task | None = None
        self._connecting = asyncio.Lock()
        self._metric_labels = {"database": address.label}

    @property
    def lagging(self) -> bool:
        return self.lag_bytes is not None and self.lag_bytes > self.settings.replica_max_lag_bytes

    def quarantine(self, reason: str) -> None:
        if self.healthy:
            log.warning(
                "replica quarantined",
                replica=self.address.name,
                reason=reason,
                seconds=self.settings.replica_quarantine_seconds,
            )
        self.healthy = False
        self.error = reason
        self.quarantined_until = time.monotonic() + self.settings.replica_quarantine_seconds
        DB_REPLICA_HEALTHY.labels(**self._metric_labels).set(0)

    def _reinstate(self) -> None:
        if not self.healthy:
            log.info("replica takes reads", replica=self.address.name, lag_bytes=self.lag_bytes)
        self.healthy = True
        self.error = None
        DB_REPLICA_HEALTHY.labels(**self._metric_labels).set(1)

    async def _connect(self) -> asyncpg.Pool:
        async with self._connecting:
            if self.pool is None:
                self.pool = await self._create_pool()
        return self.pool

    async def _create_pool(self) -> asyncpg.Pool:
        s = self.settings
        pool = create_pool(self.address.url, s.replica_pool)
        async with asyncio.timeout(s.replica_pool.connect_timeout * WARM_CONNECTIONS):
            return await pool

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        if self.pool is not None:
            await close_pool(self.pool, self.settings.db_read_connect_timeout)
            self.pool = None

    async def _fetch_replay_lsn(self) -> int:
        """Ask the replica how far it has replayed; quarantines it if it does not answer."""
        try:
            pool = await self._connect()
            async with read_only_session(pool, self.settings.db_read_connect_timeout) as conn:
                lsn = await conn.fetchval(REPLAY_POSITION, timeout=self.settings.db_read_statement_timeout)
        except (SessionUnavailable, *UNUSABLE) as exc:
            self.reachable = False
            self.quarantine(f"{type(exc).__name__}: {exc}")
            raise ReplicaUnavailable(self.address.name) from exc
        self.reachable = True
        self.replay_lsn = max(self.replay_lsn, lsn)
        self.replay_checked = time.monotonic()
        return self.replay_lsn

    async def _refresh_replay_lsn(self) -> None:
        """One question in flight per replica, however many reads wait on the answer."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch_replay_lsn())
        await asyncio.shield(self._refreshing)

    async def has_replayed(self, lsn: int) -> bool:
        """Whether this replica has replayed `lsn`; replay only moves forward, so a
        position already past it needs no question, and a recent one is trusted briefly."""
        if lsn <= self.replay_lsn:
            return True
        if time.monotonic() - self.replay_checked < REPLAY_CACHE_SECONDS:
            return False
        try:
            await self._refresh_replay_lsn()
        except ReplicaUnavailable:
            return False
        return lsn <= self.replay_lsn

    async def probe(self, primary_lsn: int | None) -> None:
        """Measure reachability and lag; take the replica back once its quarantine is over."""
        try:
            replay = await self._fetch_replay_lsn()
        except ReplicaUnavailable:
            return
        if primary_lsn is not None:
            self.lag_bytes = max(primary_lsn - replay, 0)
            DB_REPLICA_LAG_BYTES.labels(**self._metric_labels).set(self.lag_bytes)
        if self.lagging:
            self.quarantine(f"{self.lag_bytes} bytes of WAL behind the primary")
        elif self.healthy or time.monotonic() >= self.quarantined_until:
            self._reinstate()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[asyncpg.Connection]:
        """A read-only session here, or `ReplicaUnavailable` (and quarantine) before yielding."""
        try:
            pool = await self._connect()
        except UNUSABLE as exc:
            self.quarantine(f"{type(exc).__name__}: {exc}")
            raise ReplicaUnavailable(self.address.name) from exc
        try:
            async with read_only_session(pool, self.settings.db_read_connect_timeout) as conn:
                yield conn
        except SessionUnavailable as exc:
            self.quarantine(str(exc))
            raise ReplicaUnavailable(self.address.name) from exc
        except CONNECTION_ERRORS as exc:
            self.quarantine(f"{type(exc).__name__}: {exc}")
            raise

    def status(self) -> dict:
        return {
            "role": "replica",
            "name": self.address.name,
            "region": self.address.region,
            "reachable": self.reachable,
            "lag_bytes": self.lag_bytes,
            "lagging": self.lagging,
            "quarantined": not self.healthy,
            **({"error": self.error} if self.error and not self.reachable else {}),
        }


class ReplicaSet:
    """The configured replicas, in the order a read should try them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.region = settings.region
        self.replicas = [Replica(parse_replica_url(url), settings) for url in settings.database_url_read]
        self._prober: asyncio.Task | None = None

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def candidates(self) -> list[Replica]:
        """Healthy replicas, shuffled to spread reads, the process's own region first."""
        healthy = [replica for replica in self.replicas if replica.healthy]
        random.shuffle(healthy)
        if self.region is not None:
            healthy.sort(key=lambda replica: replica.address.region != self.region)
        return healthy

    async def choose(self, lsn: int) -> tuple[Replica | None, str | None]:
        """The replica to read from, or None and why not. Each replica is checked against
        `lsn` on its own: one that has caught up says nothing about the others."""
        candidates = self.candidates()
        if not candidates:
            return None, "unhealthy"
        for replica in candidates:
            if await replica.has_replayed(lsn):
                return replica, None
        return None, "stale"

    async def probe(self, primary_lsn: Callable[[], Awaitable[int | None]]) -> None:
        lsn = await primary_lsn()
        await asyncio.gather(*(replica.probe(lsn) for replica in self.replicas))

    def start(self, primary_lsn: Callable[[], Awaitable[int | None]]) -> None:
        async def probe_forever() -> None:
            while True:
                try:
                    await self.probe(primary_lsn)
                except Exception:  # a surprise must not end the probes: replicas would never return
                    log.exception("replica probe failed")
                await asyncio.sleep(min(PROBE_INTERVAL, self.settings.replica_quarantine_seconds))

        self._prober = asyncio.create_task(probe_forever())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
        await asyncio.gather(*(replica.close() for replica in self.replicas))
