"""What the `conveyor up` tests share: `up` run as a user runs it (a subprocess with no
DATABASE_URL, REDIS_URL or STORAGE_URL, its data directory named by CONVEYOR_HOME), the CLI
beside it, and the module's data directory with its embedded servers cleaned up after."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.cli.embedded import POSTGRES_DIR

from .net import free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # the first start runs initdb
KEY = re.compile(r"^(cvk_\S+)$", re.MULTILINE)
ADMIN_KEY = re.compile(r"admin key: (\S+)\)")
UNSET = (
    "DATABASE_URL",
    "REDIS_URL",
    "STORAGE_URL",
    "CONVEYOR_DATA_DIR",
    "CONVEYOR_HOME",
    "SMTP_URL",
    "ADMIN_KEY",
    "CALLBACK_ALLOWED_HOSTS",
    "CONVEYOR_URL",
    "CONVEYOR_API_KEY",
)


def environment(home: Path, **overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    return {**env, "CONVEYOR_HOME": str(home), **overrides}


def conveyor(home: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """A CLI command run elsewhere than the repository, finding `up`'s data through CONVEYOR_HOME."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        env=environment(home, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


class Up:
    """One `conveyor up` process, in a session of its own (as a shell job is), and what it printed."""

    def __init__(self, home: Path, log_dir: Path, *args: str, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout = log_dir / f"up-{self.port}.out"
        self.stderr = log_dir / f"up-{self.port}.err"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "up", "--port", str(self.port), *args],
                cwd=ROOT,
                env=environment(home, **env),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def wait_for_key(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := KEY.search(self.stdout.read_text())):
            assert self.process.poll() is None, f"conveyor up exited: {self.output()}"
            assert time.monotonic() < deadline, f"no key printed: {self.output()}"
            time.sleep(0.2)
        return found.group(1)

    def http(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def processes(self) -> list[psutil.Process]:
        """Every process this `up` started: its children and the embedded servers."""
        found = psutil.Process(self.process.pid).children(recursive=True)
        for pid_file in (self.home / POSTGRES_DIR / "postmaster.pid", *self.home.glob("redis/*.settings")):
            if pid_file.suffix == ".settings":
                pid_file = Path(json.loads(pid_file.read_text())["pidfile"])
            found.append(psutil.Process(int(pid_file.read_text().split()[0])))
        return found

    def signal_group(self, signum: int) -> None:
        """As a terminal's Ctrl-C, or a supervisor stopping the job, does: the whole group."""
        os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def wait_for(http: httpx.Client, job_id: str, *statuses: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.2)
    return job


def assert_all_gone(processes: list[psutil.Process], timeout: float = 15.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"still running: {[(process.pid, process.name()) for process in alive]}"


@pytest.fixture(scope="module")
def home():
    """One data directory for the module's tests (initdb takes a while), each test
    stopping its `up` before the next. Outside pytest's base temp dir: as root, pgserver
    opens the path's parents to its `pgserver` user, and any pytest session starting
    meanwhile closes that one again."""
    with tempfile.TemporaryDirectory(prefix="conveyor-up-") as path:
        yield Path(path) / "home"
        _kill_servers_under(path)  # left by a test that failed before its `up` stopped them


def _kill_servers_under(path: str) -> None:
    for process in psutil.process_iter(["name", "cmdline", "cwd"]):
        if process.info["name"] in ("postgres", "redis-server") and (
            path in " ".join(process.info["cmdline"] or ()) or path in (process.info["cwd"] or "")
        ):
            process.kill()
