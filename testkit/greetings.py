"""Kinds of job declared in Python for the jobs API's tests: the `Greeting` input, its kind
as workers describe it to the ledger, as an app declares it, and the rows it leaves."""

import asyncio
import uuid
from datetime import timedelta, timezone

import pytest
from pydantic import BaseModel, Field

import conveyor
from service import ledger
from service.databases.database import Database

from .service import publish_kinds

PARIS_WINTER = timezone(timedelta(hours=1))


class Greeting(BaseModel):
    name: str
    times: int = Field(default=1, ge=1, le=10)


def greeting_kind(name: str, **rules) -> ledger.KindDescription:
    return ledger.KindDescription(
        name=name,
        description="Say hello",
        input_schema=Greeting.model_json_schema(),
        stages=("greet",),
        **{"tries": 3, "timeout": 30.0, "queue": "unused", **rules},
    )


async def _rows(settings, query: str, keys: list[str]) -> list[dict]:
    db = Database(settings)
    await db.open()
    try:
        async with db.read() as conn:
            return [dict(row) for row in await conn.fetch(query, keys)]
    finally:
        await db.close()


async def kind_rows(settings, names: list[str]) -> dict[str, dict]:
    rows = await _rows(settings, "SELECT * FROM kinds WHERE name = ANY($1)", names)
    return {row["name"]: row for row in rows}


async def job_rows(settings, ids: list[str]) -> dict[str, dict]:
    rows = await _rows(settings, "SELECT * FROM jobs WHERE id = ANY($1::uuid[])", ids)
    return {str(row["id"]): row for row in rows}


def unique(prefix: str) -> str:
    """A kind name of this test's own: the database is shared by the session's tests."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def greet(settings) -> str:
    """A published kind `greet_…` with Greeting input, 3 tries, 30 s, on the test's queue."""
    name = unique("greet")
    await publish_kinds(settings, greeting_kind(name, queue=settings.queue_name))
    return name


def greeter(name: str, **rules) -> conveyor.Pipeline:
    """The kind `greeting_kind` describes, as an app declares it."""

    @conveyor.job(name, input=Greeting, timeout=30, **rules)
    async def greet(ctx: conveyor.Context, input: Greeting) -> dict:
        if input.name.startswith("fail-"):
            raise conveyor.Fail(input.name.removeprefix("fail-"), "refused")
        return {"text": f"Hello, {input.name}" * input.times}

    return greet


def sleeper(name: str) -> conveyor.Pipeline:
    @conveyor.job(name, input=Greeting, timeout=30, tries=1)
    async def greet(ctx: conveyor.Context, input: Greeting) -> dict:
        await asyncio.sleep(30)
        return {}

    return greet
