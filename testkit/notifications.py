"""What the notification and callback tests share: settings that let workers reach local
receivers and retry in fractions of a second, and a receiver holding the tenant's secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.config import Settings
from service.databases.database import Database
from service.ledger.tenants import webhook_secrets

from .service import make_settings
from .webhook_receiver import WebhookReceiver

FAST_RATES = ["email=1000/1000", "sms=1000/1000", "push=1000/1000", "webhook=1000/1000"]


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
