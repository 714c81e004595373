"""Worker processes: started with `python -m`, watched through the recorder's Redis keys."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Self

import redis.asyncio as aredis

from .recorder import ready_key

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.02


class WorkerFailed(RuntimeError):
    """The worker exited or never became ready; carries the tail of its log."""


class WorkerProcess:
    """One worker in its own session, its output kept in `log_path` for post-mortems; its
    environment is this process's unless `env` is given; in network namespace `netns` if given
    (`ip netns exec` execs the worker: the pid is the worker's)."""

    def __init__(
        self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, *, netns: str | None = None
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.prefix,
                sys.executable,
                "-m",
                *self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise WorkerFailed(f"worker {' '.join(self.argv[:1])} exited with {self.process.returncode}:\n{tail}")

    async def wait_ready(self, redis: aredis.Redis) -> None:
        """Until the worker's framework has started (its startup hook marks it ready)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await redis.exists(ready_key(self.pid)):
            self.check_alive()
            if time.monotonic() > deadline:
                raise WorkerFailed(f"worker {self.argv[0]} not ready after {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(POLL_S)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None, "worker not started"
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
