"""`conveyor up` end to end, as a user runs it: a subprocess with no DATABASE_URL,
REDIS_URL or STORAGE_URL, so PostgreSQL and Redis are the embedded ones, its data
directory named by CONVEYOR_HOME, stopped by signals as a terminal or a supervisor would."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.cli.embedded import POSTGRES_DIR, postgres_running
from service.cli.local import local_settings
from service.config import Settings
from testkit.documents import scanned_pdf
from testkit.heads import cpu_seconds, send_huge_header
from testkit.net import free_port
from testkit.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # the first start runs initdb
KEY = re.compile(r"^(cvk_\S+)$", re.MULTILINE)
ADMIN_KEY = re.compile(r"admin key: (\S+)\)")
SUBMIT_EXAMPLE = re.compile(r"^  (CONVEYOR_URL=\S+ CONVEYOR_API_KEY=\S+ conveyor submit .+ --wait)$", re.MULTILINE)
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


@pytest.fixture
def elsewhere(tmp_path):
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_up_keeps_its_keys_and_offers_every_channel_with_nothing_configured(home, tmp_path, elsewhere):
    up = Up(home, tmp_path)
    receiver = None
    try:
        key = up.wait_for_key()
        secret = conveyor(home, "webhooks", "secret", "--tenant", "default", cwd=elsewhere)
        assert secret.returncode == 0, secret.stderr
        receiver = WebhookReceiver(secret.stdout.split()[-1])
        receiver.start()
        banner = up.stdout.read_text()
        assert f"Conveyor is up at {up.url}" in banner and str(home) in banner
        assert "tools      ffmpeg ok, ffprobe ok, tesseract ok" in banner
        admin_key = ADMIN_KEY.search(banner).group(1)
        assert len(admin_key) >= 32

        # The banner's example works as printed, from any directory.
        example = SUBMIT_EXAMPLE.search(banner).group(1)
        submitted = subprocess.run(
            example,
            shell=True,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=180,
            env=environment(home, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr

        with up.http(key) as http:
            dashboard = httpx.get(f"{up.url}/dashboard/api/overview", headers={"Authorization": f"Bearer {admin_key}"})
            assert dashboard.status_code == 200, dashboard.text
            mail = http.post(
                "/v1/notifications",
                json={"channel": "email", "to": "ada@example.com", "template": "welcome", "data": {"name": "Ada"}},
            )
            hook = http.post(
                "/v1/notifications",
                json={
                    "channel": "webhook",
                    "to": f"{receiver.url}/hook",
                    "template": "order.paid",
                    "data": {"order": 1},
                },
            )
            assert mail.status_code == hook.status_code == 202, mail.text + hook.text
            wait_for(http, mail.json()["id"], "succeeded")
            wait_for(http, hook.json()["id"], "succeeded")
        assert [received.verified for received in receiver.at("hook")] == [True], "loopback is allowed under `up`"
        caught = conveyor(home, "mail", "--json", cwd=elsewhere)
        assert caught.returncode == 0, caught.stderr
        assert [(message["to"], "Ada" in message["text"]) for message in json.loads(caught.stdout)] == [
            ("ada@example.com", True)
        ]

        assert {(home / name).stat().st_mode & 0o777 for name in ("api-key", "admin-key")} == {0o600}
        listed = conveyor(home, "keys", "list", "--tenant", "default", "--json", cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        assert [entry["prefix"] for entry in json.loads(listed.stdout)] == [key[:12]]
        up.signal_group(signal.SIGTERM)
        assert up.process.wait(timeout=120) == 0
    finally:
        up.kill()
        if receiver is not None:
            receiver.stop()
    assert not postgres_running(home)

    again = Up(home, tmp_path)
    try:
        assert again.wait_for_key() == key, "the same key after a restart"
        assert ADMIN_KEY.search(again.stdout.read_text()).group(1) == admin_key
        before = cpu_seconds(again.process.pid)
        answer = send_huge_header(again.port, 64 * 1024 * 1024)
        assert cpu_seconds(again.process.pid) - before < 2.0, "a huge request head is refused early"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
        again.signal_group(signal.SIGINT)
        assert again.process.wait(timeout=120) == 0
    finally:
        again.kill()


def test_loopback_callbacks_only_while_the_api_listens_on_loopback_alone(tmp_path):
    assert "127.0.0.0/8" in local_settings(Settings(), tmp_path, host="127.0.0.1").callback_allowed_hosts
    assert local_settings(Settings(), tmp_path, host="0.0.0.0").callback_allowed_hosts == []
    chosen = Settings(callback_allowed_hosts="10.0.0.5")
    assert local_settings(chosen, tmp_path, host="127.0.0.1").callback_allowed_hosts == ["10.0.0.5"]


def test_every_process_stops_on_sigterm_after_a_document_and_leftovers_are_recovered(home, tmp_path):
    up = Up(home, tmp_path)
    try:
        key = up.wait_for_key()
        with up.http(key) as http:
            response = http.post(
                "/v1/documents", files={"file": ("scan.pdf", scanned_pdf("Jane Doe"), "application/pdf")}
            )
            wait_for(http, response.json()["id"], "succeeded")  # read by a page reader, OCR'd by tesseract
        started = up.processes()
        assert any("fork_server" in " ".join(process.cmdline()) for process in started)
        up.signal_group(signal.SIGTERM)
        assert up.process.wait(timeout=120) == 0, up.output()
    finally:
        up.kill()
    assert "Traceback" not in up.output() and "Conveyor stopped." in up.output()
    assert_all_gone(started)

    # Killed outright: its servers are left running, and the next `up` adopts them.
    crashed = Up(home, tmp_path)
    try:
        crashed.wait_for_key()
        left = [process for process in crashed.processes() if process.name() in ("postgres", "redis-server")]
        assert {process.name() for process in left} == {"postgres", "redis-server"}
        crashed.process.kill()
        crashed.process.wait()
        assert all(process.is_running() for process in left)
    finally:
        crashed.kill()
    adopted = Up(home, tmp_path)
    try:
        with adopted.http(adopted.wait_for_key()) as http:
            assert http.get("/v1/jobs").status_code == 200
        assert {process.pid for process in left} <= {process.pid for process in adopted.processes()}
        # Now everything dies at once, as in a power cut: pid files name dead processes,
        # and one names a pid reused since by another program (here: this test).
        everything = adopted.processes()
        for process in everything:
            process.kill()
        assert_all_gone(everything)
    finally:
        adopted.kill()
    (home / POSTGRES_DIR / "postmaster.pid").write_text(f"{os.getpid()}\n")
    recovered = Up(home, tmp_path)
    try:
        with recovered.http(recovered.wait_for_key()) as http:
            assert http.get("/v1/jobs").status_code == 200
        started = recovered.processes()
        recovered.signal_group(signal.SIGINT)
        assert recovered.process.wait(timeout=120) == 0, recovered.output()
    finally:
        recovered.kill()
    assert_all_gone([*left, *started])


def test_ctrl_c_says_what_it_waits_for_and_a_second_one_stops_at_once_the_job_resuming_next_start(home, tmp_path):
    up = Up(home, tmp_path)
    receiver = None
    try:
        key = up.wait_for_key()
        secret = conveyor(home, "webhooks", "secret", "--tenant", "default", cwd=tmp_path)
        receiver = WebhookReceiver(secret.stdout.split()[-1])
        receiver.start()
        receiver.script("slow", Reply(delay=12))  # the job runs while the receiver holds it
        with up.http(key) as http:
            job_id = http.post(
                "/v1/notifications",
                json={"channel": "webhook", "to": f"{receiver.url}/slow", "template": "order.paid", "data": {}},
            ).json()["id"]
            wait_for(http, job_id, "running")
        deadline = time.monotonic() + 30
        while not receiver.at("slow"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        up.signal_group(signal.SIGINT)
        deadline = time.monotonic() + 30
        while "Ctrl-C again" not in up.stderr.read_text():
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.1)
        assert "waiting up to 20s for 1 running job to finish" in up.stderr.read_text()
        asked = time.monotonic()
        up.signal_group(signal.SIGINT)
        assert up.process.wait(timeout=60) == 0, up.output()
        assert time.monotonic() - asked < 8, "the second Ctrl-C does not wait for the job"
        assert "Conveyor stopped." in up.output()

        again = Up(home, tmp_path, "--new-key")  # and asked for a new key, which works at once
        try:
            new_key = again.wait_for_key()
            assert new_key != key
            with again.http(new_key) as http:
                assert wait_for(http, job_id, "succeeded", "failed")["status"] == "succeeded"
            again.signal_group(signal.SIGTERM)
            again.process.wait(timeout=120)
        finally:
            again.kill()
    finally:
        up.kill()
        if receiver is not None:
            receiver.stop()


def test_a_dependency_that_does_not_answer_stops_up_at_once_naming_it(home, tmp_path, redis_server):
    started = time.monotonic()
    no_redis = subprocess.run(  # the embedded PostgreSQL starts, then goes with it
        [sys.executable, "-m", "service.cli", "up", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment(home, REDIS_URL="redis://127.0.0.1:1/0"),
        timeout=120,
    )
    assert time.monotonic() - started < 60
    assert no_redis.returncode != 0 and "Conveyor is up" not in no_redis.stdout
    assert "REDIS_URL (redis://127.0.0.1:1/0) cannot be reached" in no_redis.stderr
    assert "PostgreSQL" not in no_redis.stderr and "Traceback" not in no_redis.stderr
    assert not postgres_running(home), "what it started stops with it"

    no_database = subprocess.run(
        [sys.executable, "-m", "service.cli", "up", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment(
            home,
            DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing",
            REDIS_URL=redis_server.url,
            STORAGE_URL=f"file://{tmp_path}/storage",
        ),
        timeout=60,
    )
    assert no_database.returncode != 0 and "Conveyor is up" not in no_database.stdout
    assert "DATABASE_URL (postgresql://postgres@127.0.0.1:1/nothing) cannot be reached" in no_database.stderr


def test_missing_tools_are_reported_and_fail_their_jobs_at_once(home, tmp_path):
    bare = tmp_path / "bin"  # a PATH with neither ffmpeg, ffprobe nor tesseract
    bare.mkdir()
    for program in ("sh", "env"):
        (bare / program).symlink_to(shutil.which(program))
    up = Up(home, tmp_path, PATH=str(bare))
    try:
        key = up.wait_for_key()
        assert (
            "ffmpeg MISSING (missing: needed for videos; install it (apt-get install ffmpeg))" in up.stdout.read_text()
        )
        admin_key = ADMIN_KEY.search(up.stdout.read_text()).group(1)
        ready = httpx.get(f"{up.url}/readyz", headers={"Authorization": f"Bearer {admin_key}"}).json()
        assert ready["status"] == "warn" and {
            tool["componentId"]: tool["status"] for tool in ready["checks"]["tools"]
        } == {"ffmpeg": "warn", "ffprobe": "warn", "tesseract": "warn"}
        with up.http(key) as http:
            samples = Path(conveyor(home, "samples", cwd=tmp_path).stdout.strip())
            video = http.post(
                "/v1/videos", files={"file": ("clip.mp4", (samples / "clip.mp4").read_bytes(), "video/mp4")}
            )
            scan = http.post(
                "/v1/documents", files={"file": ("scan.png", (samples / "scan.png").read_bytes(), "image/png")}
            )
            for response, tool in ((video, "ffprobe"), (scan, "tesseract")):
                assert response.status_code == 202, response.text
                job = wait_for(http, response.json()["id"], "failed", "succeeded", timeout=60)
                assert job["status"] == "failed" and job["attempts"] == 1, job
                assert job["error"]["type"] == "missing_tool" and tool in job["error"]["message"]
                assert "apt-get install" in job["error"]["message"]
        up.signal_group(signal.SIGTERM)
        assert up.process.wait(timeout=120) == 0
    finally:
        up.kill()
