"""What the notification and callback tests share: settings that let workers reach local
receivers and retry in fractions of a second, a receiver holding the tenant's secret, and
the fixtures and helpers of the end-to-end notification tests.

Fixtures here ask for others by name: a module using `settings` also imports `plain_smtp`
(tests.test_notifications_email) and `fcm` (tests.test_notifications_push)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from service.config import Settings
from service.databases.database import Database
from service.ledger.tenants import webhook_secrets

from .fcm_server import FcmServer
from .service import client, make_settings, running_worker, wait_for_job
from .twilio_server import TwilioServer
from .webhook_receiver import WebhookReceiver

FAST_RATES = ["email=1000/1000", "sms=1000/1000", "push=1000/1000", "webhook=1000/1000"]
PIPELINES = (NOTIFICATION_PIPELINE, CALLBACK_PIPELINE)


def local_settings(database_url: str, redis_url: str, storage_dir: Path, **overrides) -> Settings:
    """Local receivers allowed, three retries 0.2 s apart, no rate limit to speak of."""
    values = {
        "queue_name": f"conveyor-test-{os.urandom(4).hex()}",
        "callback_allowed_hosts": ["127.0.0.0/8"],
        "webhook_retry_schedule": ["0.2", "0.2", "0.2"],
        "notification_rates": FAST_RATES,
        **overrides,
    }
    return make_settings(database_url, redis_url, storage_dir, **values)


async def tenant_secret(settings: Settings, tenant_id) -> str:
    """The tenant's current webhook signing secret (created if it has none)."""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            return (await webhook_secrets(conn, tenant_id))[0]
    finally:
        await db.close()


@pytest.fixture
async def secret(settings, tenant):
    return await tenant_secret(settings, tenant[0])


@pytest.fixture
def receiver(secret):
    """A webhook endpoint verifying signatures with the test tenant's secret."""
    server = WebhookReceiver(secret).start()
    yield server
    server.stop()


class SlowTwilio(TwilioServer):
    """Twilio taking its time over each message, so a worker can die mid-bulk."""

    delay = 0.0

    async def create_message(self, request: Request):
        await asyncio.sleep(self.delay)
        return await super().create_message(request)


@pytest.fixture(scope="module")
def smtp(plain_smtp):
    return plain_smtp


@pytest.fixture(scope="module")
def twilio():
    server = SlowTwilio().start()
    yield server
    server.stop()


def channel_settings(smtp, twilio: TwilioServer, fcm: FcmServer) -> dict:
    """The settings that point email, SMS and push (FCM) at the test's servers."""
    return {
        "smtp_url": smtp[1],
        "smtp_from": "Acme <no-reply@acme.example>",
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_from": "+15005550006",
        "twilio_base_url": twilio.url,
        "fcm_project_id": fcm.project_id,
        "fcm_access_token": fcm.access_token,
        "fcm_base_url": fcm.url,
    }


@pytest.fixture
def settings(database_url, redis_server, tmp_path, smtp, twilio, fcm):
    """Every channel configured, local receivers allowed, retries in fractions of a second."""
    return local_settings(database_url, redis_server.url, tmp_path / "storage", **channel_settings(smtp, twilio, fcm))


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def phone() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def mail_to(mailbox, address: str) -> list:
    return [message for message in mailbox.messages if address in message["To"]]


async def notify(http: httpx.AsyncClient, **body) -> dict:
    """POST /v1/notifications, which must accept it; the job."""
    response = await http.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return response.json()


async def sent(http: httpx.AsyncClient, **body) -> dict:
    """notify() and wait for the job to succeed; the finished job."""
    job = await notify(http, **body)
    done = await wait_for_job(http, job["id"], timeout=30)
    assert done["status"] == "succeeded", done
    return done


async def sent_through(api, settings: Settings, tenant, **body) -> dict:
    """sent() through `api` as `tenant` (id, key), with a worker of `settings` running."""
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        return await sent(http, **body)
