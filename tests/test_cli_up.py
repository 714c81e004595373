"""`conveyor up` end to end, as a user runs it: a subprocess with no DATABASE_URL,
REDIS_URL or STORAGE_URL, so PostgreSQL and Redis are the embedded ones, its data
directory named by CONVEYOR_HOME: what it starts and offers, and how it fails to start.
How it stops on signals is in tests/test_cli_up_signals.py."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.cli.embedded import postgres_running
from service.cli.local import local_settings
from service.config import Settings
from testkit.cli_up import ADMIN_KEY, ROOT, Up, conveyor, environment, home, wait_for  # noqa: F401 (fixture)
from testkit.heads import cpu_seconds, send_huge_header
from testkit.net import free_port
from testkit.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SUBMIT_EXAMPLE = re.compile(r"^  (CONVEYOR_URL=\S+ CONVEYOR_API_KEY=\S+ conveyor submit .+ --wait)$", re.MULTILINE)


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
