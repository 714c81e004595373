import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import ConfigurationError, load_settings, mask

REPO = Path(__file__).resolve().parents[1]


def test_defaults_need_no_environment():
    settings = load_settings()
    assert settings.storage_url.startswith("file://")
    assert settings.database_url_read == []


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "http://nope")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert "REDIS_URL" in str(excinfo.value)


def test_replicas_and_queues_are_comma_separated(monkeypatch):
    monkeypatch.setenv("DATABASE_URL_READ", "postgresql://a@r1/db, postgresql://a@r2/db")
    monkeypatch.setenv("KIND_QUEUES", "video=conveyor:video")
    settings = load_settings()
    assert settings.database_url_read == ["postgresql://a@r1/db", "postgresql://a@r2/db"]
    assert settings.queue_for("video") == "conveyor:video"
    assert settings.queue_for("document") == "conveyor"


def test_mask_hides_passwords():
    assert mask("postgresql://user:hunter2@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert "hunter2" not in mask("redis://:hunter2@cache:6379/0")


def test_textract_polling_is_configured_and_checked(monkeypatch):
    monkeypatch.setenv("TEXTRACT_POLL_INTERVAL", "0.25")
    monkeypatch.setenv("TEXTRACT_MAX_POLL_INTERVAL", "4")
    settings = load_settings()
    assert (settings.textract_poll_interval, settings.textract_max_poll_interval) == (0.25, 4.0)
    monkeypatch.setenv("TEXTRACT_MAX_POLL_INTERVAL", "0.1")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert "TEXTRACT_MAX_POLL_INTERVAL" in str(excinfo.value)


def test_a_textract_notification_channel_is_all_three_settings_or_none(monkeypatch):
    assert load_settings().textract_sqs_queue_url is None
    monkeypatch.setenv("TEXTRACT_SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:textract")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert "TEXTRACT_SQS_QUEUE_URL" in str(excinfo.value)
    monkeypatch.setenv("TEXTRACT_SNS_ROLE_ARN", "arn:aws:iam::123456789012:role/textract")
    monkeypatch.setenv("TEXTRACT_SQS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/textract")
    assert load_settings().textract_sqs_queue_url.endswith("/textract")


def test_video_timeout_is_configured_and_checked(monkeypatch):
    assert load_settings().video_timeout_seconds == 30 * 60
    monkeypatch.setenv("VIDEO_TIMEOUT_SECONDS", "90")
    assert load_settings().video_timeout_seconds == 90.0
    for bad in ("0", "-5", "inf", "soon"):
        monkeypatch.setenv("VIDEO_TIMEOUT_SECONDS", bad)
        with pytest.raises(ConfigurationError) as excinfo:
            load_settings()
        assert "VIDEO_TIMEOUT_SECONDS" in str(excinfo.value), bad


@pytest.mark.integration  # starts a process
def test_the_worker_entry_point_gives_video_jobs_the_configured_timeout():
    """`arq worker.WorkerSettings` as deployed: arq's timeout for `video` follows the setting."""
    script = (
        "import worker; from pipelines.lifecycle import TIMEOUT_MARGIN; "
        "print([f.timeout_s - TIMEOUT_MARGIN for f in worker.WorkerSettings.functions if f.name == 'video'])"
    )
    env = {**os.environ, "VIDEO_TIMEOUT_SECONDS": "90"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[90.0]"


async def test_page_readers_get_four_slots_a_core_unless_configured(monkeypatch):
    from pipelines.documents.tools import DocumentTools

    for configured, expected in ((None, 4 * (os.cpu_count() or 1)), ("3", 3)):
        if configured:
            monkeypatch.setenv("DOCUMENT_READER_CONCURRENCY", configured)
        tools = DocumentTools.open(load_settings(), redis=None)
        try:
            assert tools.readers.concurrency == expected
        finally:
            await tools.aclose()
    monkeypatch.setenv("DOCUMENT_READER_CONCURRENCY", "0")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert "DOCUMENT_READER_CONCURRENCY" in str(excinfo.value)


@pytest.mark.integration  # starts a process
def test_a_short_admin_key_stops_the_api_at_start_naming_it():
    """`uvicorn service.app:app` with a guessable ADMIN_KEY exits before serving, saying why;
    32 characters are accepted, and an empty value leaves the dashboard off."""
    env = {**os.environ, "ADMIN_KEY": "x" * 31}
    out = subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "ADMIN_KEY: " in out.stderr and "at least 32 characters" in out.stderr
    assert "Traceback" not in out.stderr
    for value, expected in (("x" * 32, "x" * 32), ("", None)):
        settings = load_settings(admin_key=value)
        assert (settings.admin_key and settings.admin_key.get_secret_value()) == expected
