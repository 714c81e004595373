"""`conveyor up` end to end, as a user runs it: a subprocess with no DATABASE_URL,
REDIS_URL or STORAGE_URL, so PostgreSQL and Redis are the embedded ones."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from pipelines.registry import pipelines
from service.config import Settings
from service.embedded import postgres_running
from tests.support.files import multipart_file, text_pdf
from tests.support.heads import cpu_seconds, send_huge_header
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # the first start runs initdb
KEY = re.compile(r"^(cvk_\S+)$", re.MULTILINE)
REDIS_SOCKET = re.compile(r"redis\s+unix://(\S+)")


class Up:
    """One `conveyor up` process and what it printed."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout = log_dir / f"up-{self.port}.out"
        env = {name: value for name, value in os.environ.items()
               if name not in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "CONVEYOR_DATA_DIR")}
        with self.stdout.open("wb") as out, (log_dir / f"up-{self.port}.err").open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "up", "--port", str(self.port), "--data-dir", str(data_dir)],
                cwd=ROOT, env=env, stdout=out, stderr=err,
            )

    def wait_for_key(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := KEY.search(self.stdout.read_text())):
            assert self.process.poll() is None, f"conveyor up exited: {self.stdout.read_text()}"
            assert time.monotonic() < deadline, f"no key printed: {self.stdout.read_text()}"
            time.sleep(0.2)
        return found.group(1)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for(http: httpx.Client, job_id: str, status: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] != status:
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.2)
    return job


@pytest.fixture
def data_dir():
    """Outside pytest's base temp dir: as root, pgserver opens the path's parents to its
    `pgserver` user, and any pytest session starting meanwhile closes that one again."""
    with tempfile.TemporaryDirectory(prefix="conveyor-up-") as path:
        yield Path(path) / "data"


def test_up_runs_everything_embedded_and_stops_cleanly(data_dir, tmp_path):
    up = Up(data_dir, tmp_path)
    try:
        key = up.wait_for_key()
        assert f"Conveyor is up at {up.url}" in up.stdout.read_text()
        redis_socket = Path(REDIS_SOCKET.search(up.stdout.read_text()).group(1))
        with httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            response = http.post("/v1/documents", files=multipart_file(text_pdf("Jane Doe, jane@example.com")))
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            assert http.get(f"/v1/jobs/{job_id}").status_code == 200
            assert job_id in [job["id"] for job in http.get("/v1/jobs").json()["items"]]
            if "document" in {pipeline.kind for pipeline in pipelines(Settings())}:
                wait_for(http, job_id, "succeeded")
            else:  # no document pipeline registered: nothing may take the job
                assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        assert postgres_running(data_dir) and redis_socket.exists()
        assert up.stop() == 0
    finally:
        up.kill()
    assert "Conveyor stopped." in up.stdout.read_text()
    assert not postgres_running(data_dir)
    assert not redis_socket.exists()
    assert list((data_dir / "storage").rglob("original")), "the upload is kept in the data dir"

    again = Up(data_dir, tmp_path)
    try:
        new_key = again.wait_for_key()
        assert new_key != key
        with httpx.Client(base_url=again.url, headers={"Authorization": f"Bearer {new_key}"}, timeout=30) as http:
            assert http.get(f"/v1/jobs/{job_id}").status_code == 200, "the data survives a restart"
        before = cpu_seconds(again.process.pid)
        answer = send_huge_header(again.port, 64 * 1024 * 1024)
        assert cpu_seconds(again.process.pid) - before < 2.0, "a huge request head is refused early"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
        assert again.stop() == 0
    finally:
        again.kill()
    assert not postgres_running(data_dir)
