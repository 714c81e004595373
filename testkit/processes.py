"""Processes as the tests see them: worker and API subprocesses for fault tests
(`python -m arq …`, `python -m uvicorn …`) that can be killed or sent SIGTERM, and the
process table, read for orphaned tools.

`WorkerPool.supervise()` plays the process manager (systemd's Restart=always): a worker
that was killed, or exited because Redis went away, is started again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from service.config import Settings

from .net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
CHAOS_WORKER = "testkit.chaos_worker.WorkerSettings"
_SETTINGS_PASSED = (
    "database_url",
    "redis_url",
    "storage_url",
    "s3_endpoint_url",
    "queue_name",
    "worker_max_jobs",
    "worker_poll_delay",
    "worker_heartbeat_seconds",
    "worker_dead_after_seconds",
    "reconcile_after_seconds",
    "callback_allowed_hosts",
    "db_connect_timeout",
    "db_statement_timeout",
    "log_json",
    "log_level",
    "max_upload_bytes",
    "rate_limit_per_minute",
    "tenant_max_queued_jobs",
)


def settings_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment a worker or API process reads these settings from, plus test knobs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHAOS_")}
    for name in _SETTINGS_PASSED:
        value = getattr(settings, name)
        if value is None:
            env.pop(name.upper(), None)
            continue
        env[name.upper()] = ",".join(value) if isinstance(value, list) else str(value)
    env.update({key.upper(): str(value) for key, value in extra.items()})
    env["PYTHONPATH"] = str(ROOT)
    return env


class Process:
    """One subprocess of ours, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, *, netns: str | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.netns = netns
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        command = self.command()
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]  # exec: same pid
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """kill -9: no shutdown hook runs, its heartbeat and arq keys are left to expire."""
        self.signal(signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WorkerProcess(Process):
    def __init__(
        self, env: dict[str, str], log_path: Path, *, netns: str | None = None, settings_path: str = CHAOS_WORKER
    ) -> None:
        super().__init__(env, log_path, netns=netns)
        self.settings_path = settings_path

    def command(self) -> list[str]:
        return [sys.executable, "-m", "arq", self.settings_path]


def api_command(port: int, *options: str) -> list[str]:
    """`uvicorn service.app:app` as deployed (request heads bounded) on 127.0.0.1:`port`;
    the tests and the benchmarks start the API with it, so both run what users run."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "service.api.request_heads:BoundedHttpProtocol",
        *options,
    ]


class ApiProcess(Process):
    """`uvicorn service.app:app` as the contract documents it, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, *, grace_seconds: float = 30) -> None:
        super().__init__(env, log_path)
        self.port = free_port()
        self.grace_seconds = grace_seconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return api_command(self.port, "--timeout-graceful-shutdown", str(self.grace_seconds), "--log-level", "warning")

    def start(self) -> ApiProcess:
        super().start()
        wait_for_port(self.port)
        return self


class WorkerPool:
    def __init__(self, env: dict[str, str], log_dir: Path, count: int) -> None:
        self.workers = [WorkerProcess(env, log_dir / f"worker-{n}.log") for n in range(count)]
        self.restarts = 0

    def __enter__(self) -> WorkerPool:
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()

    def supervise(self) -> None:
        """Start again any worker that is not running."""
        for worker in self.workers:
            if not worker.alive:
                self.restarts += 1
                worker.start()

    def logs(self) -> str:
        return "\n".join(f"== {worker.log_path.name}\n{worker.log()[-3000:]}" for worker in self.workers)


def tool_children(name: str = "ffmpeg") -> list[psutil.Process]:
    """Tool processes descended from this test process (none may outlive a cancel)."""
    children = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == name:
                children.append(child)
        except psutil.NoSuchProcess:
            continue
    return children


async def lingering_children(name: str, *, within: float = 5.0) -> list[psutil.Process]:
    """The `name` children still there after `within` seconds: a killed child is reaped
    asynchronously (uvloop's SIGCHLD handler), so it may show as a zombie for a moment."""
    deadline = time.monotonic() + within
    while (children := tool_children(name)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return children
