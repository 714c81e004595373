"""A private PostgreSQL cluster for tests that stop, restart or cut off the database.

Never the machine's shared server on 5432: this one lives in a temp directory owned by
`postgres`, on a free port, and is run with `runuser -u postgres -- pg_ctl …`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .net import wait_for_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=60)


class PgCluster:
    def __init__(self, port: int, *, listen: tuple[str, ...] = ("127.0.0.1",), trust: tuple[str, ...] = ()) -> None:
        self.port = port
        self.listen = listen
        self.trust = trust  # extra CIDRs allowed in without a password
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def init(self) -> PgCluster:
        _as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '{','.join(self.listen)}'\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\nmax_connections = 200\n"
            )
        with (self.data / "pg_hba.conf").open("a") as hba:
            for cidr in self.trust:
                hba.write(f"host all all {cidr} trust\n")
        return self

    def _ctl(self, *args: str) -> None:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", *args)

    def start(self) -> None:
        self._ctl("start")
        wait_for_port(self.port)

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")
        wait_for_port(self.port)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
