"""Create a Conveyor job inside your own database transaction, on the driver your app uses.

The job exists if and only if your transaction commits (it is a row the transaction
writes, through the `conveyor_enqueue` SQL function), and a worker starts it within a
second of the commit. One statement is built here for each driver's placeholders; the
adapters only run it:

    async with conn.transaction():                       # asyncpg
        await conn.execute("INSERT INTO bookings ...")
        job_id = await enqueue(conn, tenant="acme", kind="greet", input={"name": "Ada"}, priority="high")

`enqueue_sqlalchemy` / `enqueue_sqlalchemy_async` take a Session or Connection (sync or
async), `enqueue_psycopg` / `enqueue_psycopg_async` a psycopg 3 connection or cursor. The
options are the jobs API's: `priority`, `run_at` (a datetime with a time zone, or ISO
8601 text with an offset), `max_tries`, `timeout`, `callback_url`, `metadata`,
`concurrency_key`. A bad tenant, kind or option raises the driver's own error, which
aborts the transaction. No driver is imported here: an app has one of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

__all__ = ["enqueue", "enqueue_psycopg", "enqueue_psycopg_async", "enqueue_sqlalchemy", "enqueue_sqlalchemy_async"]

#: conveyor_enqueue's arguments, and the type each is sent as (JSON goes as text, so a
#: custom jsonb codec on the app's connection cannot change what is sent).
_ARGUMENTS = (("tenant", "text"), ("kind", "text"), ("input", "jsonb"), ("options", "jsonb"))


def _statement(placeholder: Callable[[int, str], str]) -> str:
    """The call, with each argument written by `placeholder(position, name)`."""
    arguments = ", ".join(
        f"{name} => CAST(CAST({placeholder(position, name)} AS text) AS {type_})"
        for position, (name, type_) in enumerate(_ARGUMENTS, 1)
    )
    return f"SELECT conveyor_enqueue({arguments}) AS job_id"


ASYNCPG_SQL = _statement(lambda position, _: f"${position}")
SQLALCHEMY_SQL = _statement(lambda _, name: f":{name}")
PSYCOPG_SQL = _statement(lambda _, name: f"%({name})s")


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def arguments(*, tenant: str, kind: str, input: dict, **options: Any) -> dict[str, str]:
    """The statement's parameters, by name (in the order of `_ARGUMENTS`)."""
    return {
        "tenant": tenant,
        "kind": kind,
        "input": json.dumps(input, default=_json_value),
        "options": json.dumps(options, default=_json_value),
    }


def _job_id(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def _first(row: Any) -> Any:
    """The job id from a psycopg row, whatever the connection's row factory."""
    return row["job_id"] if isinstance(row, Mapping) else row[0]


async def enqueue(conn: Any, *, tenant: str, kind: str, input: dict, **options: Any) -> uuid.UUID:
    """On an asyncpg connection (or a pool's connection), in its current transaction."""
    return _job_id(
        await conn.fetchval(ASYNCPG_SQL, *arguments(tenant=tenant, kind=kind, input=input, **options).values())
    )


def enqueue_sqlalchemy(session: Any, *, tenant: str, kind: str, input: dict, **options: Any) -> uuid.UUID:
    """On a SQLAlchemy `Session` or `Connection`, in its current transaction."""
    from sqlalchemy import text

    parameters = arguments(tenant=tenant, kind=kind, input=input, **options)
    return _job_id(session.execute(text(SQLALCHEMY_SQL), parameters).scalar_one())


async def enqueue_sqlalchemy_async(session: Any, *, tenant: str, kind: str, input: dict, **options: Any) -> uuid.UUID:
    """On a SQLAlchemy `AsyncSession` or `AsyncConnection`, in its current transaction."""
    from sqlalchemy import text

    parameters = arguments(tenant=tenant, kind=kind, input=input, **options)
    return _job_id((await session.execute(text(SQLALCHEMY_SQL), parameters)).scalar_one())


def enqueue_psycopg(conn: Any, *, tenant: str, kind: str, input: dict, **options: Any) -> uuid.UUID:
    """On a psycopg 3 `Connection` or `Cursor`, in its current transaction."""
    row = conn.execute(PSYCOPG_SQL, arguments(tenant=tenant, kind=kind, input=input, **options)).fetchone()
    return _job_id(_first(row))


async def enqueue_psycopg_async(conn: Any, *, tenant: str, kind: str, input: dict, **options: Any) -> uuid.UUID:
    """On a psycopg 3 `AsyncConnection` or `AsyncCursor`, in its current transaction."""
    cursor = await conn.execute(PSYCOPG_SQL, arguments(tenant=tenant, kind=kind, input=input, **options))
    return _job_id(_first(await cursor.fetchone()))
