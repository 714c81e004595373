"""A deployment spread over separate hosts, on one machine: each app host a network namespace.

Two API hosts and three worker hosts, each a namespace joined to this machine by a veth
link of its own. The data tier stays on this side of the links: a PostgreSQL primary and
its synchronous streaming standby, Redis, moto's S3 server and the stage counter the
workers report to. A host reaches the data tier at its link's near address, as a real
host reaches servers across a network, so cutting one link cuts that host off from all
of them at once and from nothing else. Every process runs what users run: `uvicorn
service.app:app` and `arq` with the production wiring (testkit.chaos_worker's stages).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from service.config import Settings
from service.databases.migrate import upgrade_async

from .netns import NetNamespace
from .processes import ApiProcess, WorkerProcess, settings_env
from .redis_server import RedisServer
from .replica import StreamingReplica
from .s3_server import CREDENTIALS, S3Server
from .service import make_settings
from .stage_counter import StageCounter

API_HOSTS, WORKER_HOSTS = 2, 3
LINKS = "10.200.0.0/16"  # where every namespace's link lives (testkit.netns)
BUCKET = "topology"


class Topology:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.queue_name = f"topology-{os.urandom(3).hex()}"
        self.postgres = StreamingReplica(listen="*", trust=(LINKS,))
        self.redis = RedisServer(bind=("0.0.0.0",))
        self.s3 = S3Server(host="0.0.0.0")
        self.counter = StageCounter(host="0.0.0.0")
        self.hosts: dict[str, NetNamespace] = {}
        self.apis: list[ApiProcess] = []
        self.workers: list[WorkerProcess] = []

    def settings(self, address: str = "127.0.0.1") -> Settings:
        """The settings of a process that sees the data tier at `address`: DATABASE_URL names
        the primary and the standby in libpq's form; reads may go to the standby."""
        primary, standby = self.postgres.primary.port, self.postgres.replica.port
        return make_settings(
            f"postgresql://postgres@{address}:{primary},{address}:{standby}/conveyor?target_session_attrs=read-write",
            f"redis://{address}:{self.redis.port}/0",
            self.root / "unused",
            storage_url=f"s3://{BUCKET}/conveyor",
            s3_endpoint_url=f"http://{address}:{self.s3.port}",
            database_url_read=[f"postgresql://postgres@{address}:{standby}/conveyor"],
            queue_name=self.queue_name,
        )

    async def start(self, **worker_knobs: object) -> Topology:
        """The data tier, then the hosts, then their processes; returns once every API host
        answers (workers are ready when they take jobs: tests wait on that)."""
        self.postgres.start()
        await self.postgres.make_synchronous()
        conn = await asyncpg.connect(self.postgres.primary.url(), timeout=5)
        try:
            await conn.execute("CREATE DATABASE conveyor")
        finally:
            await conn.close()
        await upgrade_async(self.settings().database_url)
        self.redis.start()
        self.s3.start()
        self.counter.start()
        self.s3.create_bucket(BUCKET)
        for name in [f"api-{n}" for n in range(API_HOSTS)] + [f"worker-{n}" for n in range(WORKER_HOSTS)]:
            self.hosts[name] = NetNamespace().create()
        for name, host in self.hosts.items():
            settings = self.settings(host.host_address)
            if name.startswith("worker"):
                counter_url = f"http://{host.host_address}:{self.counter.served.port}"
                env = settings_env(settings, chaos_counter_url=counter_url, **CREDENTIALS, **worker_knobs)
                self.workers.append(WorkerProcess(env, self.log(name), netns=host.name).start())
            else:
                env = settings_env(settings, **CREDENTIALS)
                self.apis.append(ApiProcess(env, self.log(name), netns=host.name, host=host.peer_address))
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
        for process in (*self.apis, *self.workers):
            process.stop()
        for host in self.hosts.values():
            host.delete()
        self.counter.stop()
        self.s3.stop()
        self.redis.stop()
        self.postgres.stop()
