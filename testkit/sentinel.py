"""Redis Sentinel for tests: a master, its replicas and the sentinels watching it.

Every server is a private `redis-server` on a free port (testkit/redis_server.py), no
persistence. `SentinelServer` is one sentinel (`redis-server CONF --sentinel`, the file
its own: a sentinel rewrites it); `SentinelCluster` wires a whole topology on one address,
with failover knobs small enough for a test (a master is judged down after
`down_after_ms`). A test on several hosts builds its own topology from the two classes.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis

from .redis_server import BINARY, RedisServer


class SentinelServer(RedisServer):
    """One sentinel watching `master_name` at `master` with `quorum`."""

    def __init__(
        self,
        master_name: str,
        master: tuple[str, int],
        *,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
        bind: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        super().__init__(bind)
        self.config = os.path.join(self.dir, "sentinel.conf")
        name, (host, port) = master_name, master
        with open(self.config, "w") as conf:
            conf.write(
                f"sentinel monitor {name} {host} {port} {quorum}\n"
                f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 1\n"
            )

    def command(self) -> list[str]:
        return [BINARY, self.config, "--sentinel", *self.listening()]

    def master(self, master_name: str) -> tuple[str, int] | None:
        """Where this sentinel says the master is now."""
        with redis.Redis(host=self.bind[0], port=self.port, socket_timeout=2, decode_responses=True) as client:
            address = client.sentinel_get_master_addr_by_name(master_name)
        return (address[0], int(address[1])) if address else None


class SentinelCluster:
    """A master, `replicas` replicas of it and `sentinels` sentinels (quorum `quorum`), all
    on `host`; `url` is the `redis+sentinel://` URL the service is given."""

    def __init__(
        self,
        *,
        master_name: str = "conveyor",
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        host: str = "127.0.0.1",
    ) -> None:
        self.master_name = master_name
        self.host = host
        self.master = RedisServer((host,))
        follow = ("--replicaof", host, str(self.master.port))
        self.replicas = [RedisServer((host,), follow) for _ in range(replicas)]
        self.sentinels = [
            SentinelServer(
                master_name,
                (host, self.master.port),
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                bind=(host,),
            )
            for _ in range(sentinels)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{sentinel.bind[0]}:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}"

    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self, timeout: float = 30) -> SentinelCluster:
        """Up, the replicas in sync, and every sentinel knowing every replica and sentinel."""
        for server in (*self.servers(), *self.sentinels):
            server.start()
        deadline = time.monotonic() + timeout
        while not self._settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sentinel topology did not settle in {timeout}s")
            time.sleep(0.1)
        return self

    def _settled(self) -> bool:
        with redis.Redis(host=self.host, port=self.master.port, socket_timeout=2) as master:
            info = master.info("replication")
        online = [value for key, value in info.items() if key.startswith("slave") and value.get("state") == "online"]
        if len(online) < len(self.replicas):
            return False
        for sentinel in self.sentinels:
            with redis.Redis(host=self.host, port=sentinel.port, socket_timeout=2) as client:
                state = client.sentinel_master(self.master_name)
            if state["num-slaves"] < len(self.replicas) or state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
        return True

    def current_master(self) -> RedisServer:
        """The server the sentinels (the first that answers) name master now."""
        for sentinel in self.sentinels:
            try:
                address = sentinel.master(self.master_name)
            except redis.RedisError:
                continue
            for server in self.servers():
                if address == (server.bind[0], server.port):
                    return server
        raise LookupError("no sentinel names a master")

    async def promoted(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        """Wait until every sentinel names another master than `old`, and it takes writes."""
        deadline = time.monotonic() + timeout
        while True:
            named = {await asyncio.to_thread(self._named_by, sentinel) for sentinel in self.sentinels}
            if len(named) == 1 and (address := named.pop()) not in (None, (old.bind[0], old.port)):
                server = next(server for server in self.servers() if (server.bind[0], server.port) == address)
                if await asyncio.to_thread(self._takes_writes, server):
                    return server
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica was promoted within {timeout}s")
            await asyncio.sleep(0.1)

    def _named_by(self, sentinel: SentinelServer) -> tuple[str, int] | None:
        try:
            return sentinel.master(self.master_name)
        except redis.RedisError:
            return None

    def _takes_writes(self, server: RedisServer) -> bool:
        try:
            with redis.Redis(host=server.bind[0], port=server.port, socket_timeout=2) as client:
                return client.info("replication")["role"] == "master"
        except redis.RedisError:
            return False

    def stop(self) -> None:
        for server in (*self.sentinels, *self.servers()):
            server.__exit__()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
