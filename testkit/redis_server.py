"""A private redis-server per test session: no persistence, on a free port, restartable."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from .net import free_port, stop_server, wait_for_port


class RedisServer:
    def __init__(self, bind: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.bind = bind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="conveyor-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                *self.bind,
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        """A restart without persistence: everything Redis held is gone."""
        self.stop()
        self.start()
