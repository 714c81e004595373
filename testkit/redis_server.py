"""A private redis-server per test session: no persistence, on a free port, restartable."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile

from .net import free_port, stop_server, wait_for_port

BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server; `options` are more command-line options (`--replicaof H P`, say)."""

    def __init__(self, bind: tuple[str, ...] = ("127.0.0.1",), options: tuple[str, ...] = ()) -> None:
        self.bind = bind
        self.options = options
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="conveyor-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [BINARY, *self.listening(), "--save", "", "--appendonly", "no", *self.options]

    def listening(self) -> list[str]:
        """Where it listens, works and logs: the options every redis-server of ours shares."""
        return [
            *("--port", str(self.port), "--bind", *self.bind, "--protected-mode", "no"),
            *("--dir", self.dir, "--loglevel", "warning"),
        ]

    def start(self) -> None:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL)
        wait_for_port(self.port, self.bind[0])

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None

    def kill(self) -> None:
        """kill -9: the server vanishes mid-whatever, its clients' connections reset."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
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
