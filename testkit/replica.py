"""A real primary and a streaming replica (PG 15) on free loopback ports, for one test session.

Built the way an operator would: initdb, pg_basebackup -R, run as user postgres with
data directories in a temporary directory. The replica can be made to lag (replay paused,
or an apply delay), stopped, or frozen with SIGSTOP, and brought back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import psutil

from .net import free_port, wait_for_port

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"
CONFIG = """
listen_addresses = '{listen}'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 10
hot_standby = on
hot_standby_feedback = on
max_connections = 60
shared_buffers = 16MB
fsync = off
full_page_writes = off
"""


def _as_postgres(*args: str | Path) -> None:
    subprocess.run(
        ["runuser", "-u", USER, "--", *map(str, args)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )


class Cluster:
    """One PostgreSQL cluster (data directory, port, server process)."""

    def __init__(self, root: Path, name: str, *, listen: str = "127.0.0.1", trust: tuple[str, ...] = ()) -> None:
        self.dir = root / name
        self.listen = listen
        self.trust = trust  # CIDRs let in without a password besides loopback
        self.log = root / f"{name}.log"
        self.port = free_port()
        self.frozen: list[psutil.Process] = []

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def configure(self) -> None:
        with open(self.dir / "postgresql.conf", "a") as conf:
            conf.write(CONFIG.format(listen=self.listen, port=self.port, sockets=self.dir.parent))
        with open(self.dir / "pg_hba.conf", "a") as hba:
            hba.writelines(f"host all all {cidr} trust\nhost replication all {cidr} trust\n" for cidr in self.trust)

    def start(self) -> None:
        _as_postgres(BIN / "pg_ctl", "-D", self.dir, "-l", self.log, "-w", "-t", "60", "start")
        wait_for_port(self.port)

    def stop(self) -> None:
        self.thaw()
        if (self.dir / "postmaster.pid").exists():
            _as_postgres(BIN / "pg_ctl", "-D", self.dir, "-m", "immediate", "-w", "stop")

    def postmaster(self) -> psutil.Process:
        return psutil.Process(int((self.dir / "postmaster.pid").read_text().split()[0]))

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connects and queries hang."""
        postmaster = self.postmaster()
        postmaster.send_signal(signal.SIGSTOP)
        self.frozen = [postmaster, *postmaster.children(recursive=True)]
        for process in self.frozen[1:]:
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in reversed(self.frozen):
            try:
                process.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass
        self.frozen = []


class StreamingReplica:
    """A primary and one hot standby streaming from it; `listen` and `trust` open both to
    other hosts (network namespaces) besides loopback."""

    def __init__(self, *, listen: str = "127.0.0.1", trust: tuple[str, ...] = ()) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-replica-"))
        shutil.chown(self.root, USER, USER)
        self.primary = Cluster(self.root, "primary", listen=listen, trust=trust)
        self.replica = Cluster(self.root, "replica", listen=listen, trust=trust)

    def start(self) -> None:
        _as_postgres(BIN / "initdb", "-D", self.primary.dir, "-U", USER, "--auth=trust", "-N")
        self.primary.configure()
        self.primary.start()
        _as_postgres(
            BIN / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            self.primary.port,
            "-U",
            USER,
            "-D",
            self.replica.dir,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        self.replica.configure()
        self.replica.start()

    def stop(self) -> None:
        try:
            self.replica.stop()
            self.primary.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _replica_sql(self, query: str) -> None:
        conn = await asyncpg.connect(self.replica.url(), timeout=5)
        try:
            await conn.execute(query)
        finally:
            await conn.close()

    async def pause_replay(self) -> None:
        await self._replica_sql("SELECT pg_wal_replay_pause()")

    async def resume_replay(self) -> None:
        await self._replica_sql("SELECT pg_wal_replay_resume()")

    async def set_apply_delay(self, delay: str) -> None:
        """`recovery_min_apply_delay` on the replica, e.g. '2s'; '0' turns it off."""
        await self._replica_sql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
        await self._replica_sql("SELECT pg_reload_conf()")

    async def caught_up(self) -> None:
        """Wait until the replica has replayed everything the primary has written so far
        (in every database: the WAL position is the cluster's)."""
        primary = await asyncpg.connect(self.primary.url(), timeout=5)
        replica = await asyncpg.connect(self.replica.url(), timeout=5)
        try:
            target = await primary.fetchval("SELECT pg_current_wal_lsn()")
            for _ in range(500):
                if await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                    return
                await asyncio.sleep(0.02)
            raise TimeoutError("the replica did not catch up within 10 s")
        finally:
            await primary.close()
            await replica.close()

    async def make_synchronous(self) -> None:
        """Commits on the primary wait for the standby to flush them (the durability mode
        docs/operations.md asks for when no acknowledged job may be lost to a failover)."""
        conn = await asyncpg.connect(self.primary.url(), timeout=5)
        try:
            await conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            await conn.execute("SELECT pg_reload_conf()")
            for _ in range(1500):
                if await conn.fetchval("SELECT sync_state = 'sync' FROM pg_stat_replication"):
                    return
                await asyncio.sleep(0.02)
            raise TimeoutError("the standby did not become synchronous within 30 s")
        finally:
            await conn.close()

    def stop_replica(self) -> None:
        self.replica.stop()

    def fail_over(self) -> None:
        """The primary dies (an immediate stop) and the standby is promoted in its place."""
        self.primary.stop()
        self.promote()

    def promote(self) -> None:
        """The standby leaves recovery and takes writes (`pg_ctl promote`)."""
        _as_postgres(BIN / "pg_ctl", "-D", self.replica.dir, "-w", "-t", "60", "promote")

    def start_replica(self) -> None:
        self.replica.start()


def available() -> bool:
    """Whether this machine can run the clusters (PG 15 binaries, root to switch users)."""
    return (BIN / "initdb").exists() and os.geteuid() == 0 and shutil.which("runuser") is not None
