"""`conveyor up` stopped by signals as a terminal or a supervisor would: every process it
started goes, a job cut short resumes at the next start, and what a killed `up` left
behind is recovered."""

import os
import signal
import time

import pytest

from service.cli.embedded import POSTGRES_DIR
from testkit.cli_up import Up, assert_all_gone, conveyor, home, wait_for  # noqa: F401 (fixture)
from testkit.documents import scanned_pdf
from testkit.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.integration


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
        up.signal_group(signal.SIGINT)
        assert up.process.wait(timeout=60) == 0, up.output()
        assert "Conveyor stopped." in up.output()

        again = Up(home, tmp_path, "--new-key")  # and asked for a new key, which works at once
        try:
            new_key = again.wait_for_key()
            assert new_key != key
            with again.http(new_key) as http:
                assert wait_for(http, job_id, "succeeded", "failed")["status"] == "succeeded"
            # Delivered again: the second Ctrl-C cut the first delivery short instead of waiting for it.
            assert len(receiver.at("slow")) == 2
            again.signal_group(signal.SIGTERM)
            again.process.wait(timeout=120)
        finally:
            again.kill()
    finally:
        up.kill()
        if receiver is not None:
            receiver.stop()
