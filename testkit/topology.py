"""A deployment spread over separate hosts, on one machine: each app host a network namespace.

Two API hosts and three worker hosts, each a namespace joined to this machine by a veth
link of its own. The data tier stays on this side of the links, on one address of its
own (`address`, on the loopback device): a PostgreSQL primary and its synchronous
streaming standby, Redis behind three Sentinels (a master and a replica), moto's S3
server and the stage counter the workers report to. Every host reaches that address
through its link, as a real host reaches servers across a network, so cutting one link
cuts that host off from all of them at once and from nothing else; and the Sentinels
name the master by an address every host can reach. Every process runs what users run:
`uvicorn service.app:app` and `arq` with the production wiring (testkit.chaos_worker's
stages).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path

import asyncpg

from service.config import Settings
from service.databases.migrate import upgrade_async

from .netns import NetNamespace, ip
from .processes import ApiProcess, WorkerProcess, settings_env
from .replica import StreamingReplica
from .s3_server import CREDENTIALS, S3Server
from .sentinel import SentinelCluster
from .service import make_settings
from .stage_counter import StageCounter

API_HOSTS, WORKER_HOSTS = 2, 3
LINKS = "10.200.0.0/16"  # where every namespace's link lives (testkit.netns)
BUCKET = "topology"


class Topology:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"10.201.{random.randrange(1, 250)}.1"
        self.queue_name = f"topology-{os.urandom(3).hex()}"
        self.postgres = StreamingReplica(listen="*", trust=(LINKS, f"{self.address}/32"))
        self.redis = SentinelCluster(host=self.address, down_after_ms=1000, failover_timeout_ms=3000)
        self.s3 = S3Server(host="0.0.0.0")
        self.counter = StageCounter(host="0.0.0.0")
        self.hosts: dict[str, NetNamespace] = {}
        self.apis: list[ApiProcess] = []
        self.workers: list[WorkerProcess] = []
        self.undo = contextlib.ExitStack()  # what has started, stopped in reverse

    def settings(self) -> Settings:
        """Every process's settings: DATABASE_URL names the primary and the standby in
        libpq's form, reads may go to the standby, REDIS_URL names the Sentinels."""
        primary, standby = self.postgres.primary.port, self.postgres.replica.port
        return make_settings(
            f"postgresql://postgres@{self.address}:{primary},{self.address}:{standby}/conveyor"
            "?target_session_attrs=read-write",
            self.redis.url,
            self.root / "unused",
            storage_url=f"s3://{BUCKET}/conveyor",
            s3_endpoint_url=f"http://{self.address}:{self.s3.port}",
            database_url_read=[f"postgresql://postgres@{self.address}:{standby}/conveyor"],
            queue_name=self.queue_name,
        )

    async def start(self, **worker_knobs: object) -> Topology:
        """The data tier, then the hosts, then their processes; returns once every API host
        answers (workers are ready when they take jobs: tests wait on that)."""
        ip("addr", "add", f"{self.address}/32", "dev", "lo")
        self.undo.callback(ip, "addr", "del", f"{self.address}/32", "dev", "lo")
        self.undo.callback(self.postgres.stop)
        self.postgres.start()
        await self.postgres.make_synchronous()
        conn = await asyncpg.connect(self.postgres.primary.url(), timeout=5)
        try:
            await conn.execute("CREATE DATABASE conveyor")
        finally:
            await conn.close()
        await upgrade_async(self.settings().database_url)
        for server in (self.redis, self.s3, self.counter):
            self.undo.callback(server.stop)
            server.start()
        self.s3.create_bucket(BUCKET)
        env = settings_env(self.settings(), **CREDENTIALS)
        counter_url = f"http://{self.address}:{self.counter.served.port}"
        worker_env = settings_env(self.settings(), chaos_counter_url=counter_url, **CREDENTIALS, **worker_knobs)
        for name in [f"api-{n}" for n in range(API_HOSTS)] + [f"worker-{n}" for n in range(WORKER_HOSTS)]:
            host = self.hosts[name] = NetNamespace().create()
            self.undo.callback(host.delete)
            if name.startswith("worker"):
                self.workers.append(WorkerProcess(worker_env, self.log(name), netns=host.name))
            else:
                api = ApiProcess(env, self.log(name), netns=host.name, host=host.peer_address, start_timeout=180)
                self.apis.append(api)
        for process in (*self.workers, *self.apis):
            self.undo.callback(process.stop)
        for worker in self.workers:
            worker.start()
        await asyncio.gather(*(asyncio.to_thread(api.start) for api in self.apis))
        return self

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def logs(self) -> str:
        """The tail of every host's log, for a failing assertion to show."""
        processes = (*self.apis, *self.workers)
        return "\n".join(f"== {p.log_path.name}\n{p.log()[-2000:]}" for p in processes)

    def worker_host(self, pid: int) -> NetNamespace:
        """The host whose worker has process id `pid` (a ledger's worker_id names it)."""
        index = next(n for n, worker in enumerate(self.workers) if worker.pid == pid)
        return self.hosts[f"worker-{index}"]

    def stop(self) -> None:
        self.undo.close()
