"""conveyor_enqueue through each driver an app may hold (asyncpg, psycopg sync and async,
SQLAlchemy sync and async), the options a call records on the job, and the calls it refuses
inside the app's transaction. Real worker processes run what is committed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from conveyor.client.transaction import (
    enqueue,
    enqueue_psycopg,
    enqueue_psycopg_async,
    enqueue_sqlalchemy,
    enqueue_sqlalchemy_async,
)
from testkit.app_transactions import (  # noqa: F401 (fixtures)
    acme,
    app_conn,
    app_settings,
    bookings,
    counter,
    ended,
    publish_sample_kinds,
    ran_once,
    sync,
    workers,
)

pytestmark = pytest.mark.integration


def sqlalchemy_url(url: str, driver: str) -> str:
    """The database's URL as an app's SQLAlchemy takes it, on `driver`."""
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


async def test_sqlalchemy_async_session_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    engine = create_async_engine(sqlalchemy_url(app_settings.database_url, "asyncpg"))
    try:
        async with AsyncSession(engine) as session, session.begin():
            job_id = await enqueue_sqlalchemy_async(
                session, tenant=acme[1], kind="sync_account", input=sync(counter, "sqlalchemy"), metadata={"a": 1}
            )
    finally:
        await engine.dispose()
    job = await ended(app_settings, job_id, workers)
    assert job["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_psycopg_connection_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    def in_a_transaction() -> uuid.UUID:
        with psycopg.connect(app_settings.database_url) as conn, conn.transaction():
            conn.execute("INSERT INTO bookings (guest) VALUES ('Linus')")
            return enqueue_psycopg(
                conn, tenant=acme[1], kind="sync_account", input=sync(counter, "psycopg"), max_tries=3
            )

    job_id = await asyncio.to_thread(in_a_transaction)
    job = await ended(app_settings, job_id, workers)
    assert job["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_psycopg_async_connection_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    async with await psycopg.AsyncConnection.connect(app_settings.database_url) as conn, conn.transaction():
        job_id = await enqueue_psycopg_async(
            conn, tenant=acme[1], kind="sync_account", input=sync(counter, "psycopg-async")
        )
    assert (await ended(app_settings, job_id, workers))["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_sqlalchemy_sync_session_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    def in_a_transaction() -> uuid.UUID:
        engine = create_engine(sqlalchemy_url(app_settings.database_url, "psycopg"))
        try:
            with Session(engine) as session, session.begin():
                return enqueue_sqlalchemy(
                    session, tenant=acme[1], kind="sync_account", input=sync(counter, "sqlalchemy-sync")
                )
        finally:
            engine.dispose()

    job_id = await asyncio.to_thread(in_a_transaction)
    assert (await ended(app_settings, job_id, workers))["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_options_are_recorded_on_the_job(app_settings, acme, app_conn):
    await publish_sample_kinds(app_settings)
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    options = {
        "priority": "low",
        "run_at": run_at,
        "max_tries": 3,
        "timeout": 12.5,
        "callback_url": "https://app.example/hooks/done",
        "metadata": {"booking": 42},
        "concurrency_key": "guest-7",
    }
    transaction = app_conn.transaction()
    await transaction.start()
    try:  # the row as the transaction sees it; rolled back after
        job_id = await enqueue(app_conn, tenant=acme[1], kind="sync_account", input={"account": "x"}, **options)
        row = await app_conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    finally:
        await transaction.rollback()
    assert (row["tenant_id"], row["status"], row["attempts"]) == (acme[0], "queued", 0)
    assert (row["priority"], row["run_at"], row["max_tries"], row["timeout"]) == (0, run_at, 3, 12.5)
    assert (row["callback_url"], row["concurrency_key"]) == ("https://app.example/hooks/done", "guest-7")
    assert json.loads(row["metadata"]) == {"booking": 42}


def test_the_helpers_import_no_database_driver():
    """An app has one driver: importing the helpers must not need the others."""
    code = "import sys, conveyor.client.transaction; print(sorted({'asyncpg', 'psycopg', 'sqlalchemy'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"tenant": "nobody-here", "kind": "sync_account"}, "unknown tenant 'nobody-here'"),
        ({"kind": "nope"}, "unknown kind 'nope'; the known kinds are: "),
        ({"kind": "document"}, "kind 'document' cannot be enqueued here; its jobs are created by /v1/documents"),
        ({"kind": "sync_account", "priority": "urgent"}, 'options.priority must be "low", "normal" or "high"'),
        ({"kind": "sync_account", "run_at": "tomorrow"}, "options.run_at must be an ISO 8601 date and time"),
        ({"kind": "sync_account", "run_at": "2026-05-03T12:00:00"}, "with an offset"),
        ({"kind": "sync_account", "run_at": "2026-13-45T12:00:00Z"}, "options.run_at is not a valid moment"),
        ({"kind": "sync_account", "max_tries": 0}, "options.max_tries must be a whole number from 1 to 1000"),
        ({"kind": "sync_account", "timeout": -1}, "options.timeout must be a number of seconds above 0"),
        ({"kind": "sync_account", "callback_url": "ftp://x"}, "options.callback_url must be an absolute http://"),
        ({"kind": "sync_account", "metadata": [1]}, "options.metadata must be a JSON object"),
        ({"kind": "sync_account", "colour": "red"}, "unknown option(s) colour; the options are priority, run_at"),
    ],
)
async def test_bad_calls_raise_in_the_apps_transaction(app_settings, acme, app_conn, call, message):
    await publish_sample_kinds(app_settings)
    call = {"tenant": acme[1], "input": {}, **call}
    transaction = app_conn.transaction()
    await transaction.start()
    try:
        await app_conn.execute("INSERT INTO bookings (guest) VALUES ('Bad')")
        with pytest.raises(asyncpg.InvalidParameterValueError) as raised:
            await enqueue(app_conn, **call)
        assert message in str(raised.value)
        with pytest.raises(asyncpg.InFailedSQLTransactionError):  # the app's transaction is aborted
            await app_conn.execute("SELECT 1")
    finally:
        await transaction.rollback()
