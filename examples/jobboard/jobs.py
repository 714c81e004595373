"""The job board's background work as Conveyor kinds; workers run it with
`CONVEYOR_KINDS=examples.jobboard.jobs`.

The kinds reach the board's tables (`JOBBOARD_DATABASE_URL`, a SQLAlchemy URL such as
`postgresql+psycopg://…`), the push service (`PUSH_API_URL`), the employers'
applicant-tracking system (`ATS_API_URL`) and the payments provider (`PAYMENTS_API_URL`).
"""

from __future__ import annotations

import functools
import os
from datetime import timedelta

import httpx
from pydantic import BaseModel
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import conveyor
from examples.jobboard.tables import employers, postings

MONTH = timedelta(days=30)


@functools.cache
def database() -> AsyncEngine:
    """One engine, and its pool, per worker process."""
    return create_async_engine(os.environ["JOBBOARD_DATABASE_URL"])


def api(variable: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=os.environ[variable], timeout=10)


class NewFollower(BaseModel):
    user_id: int
    follower: str


@conveyor.job("follower_push", input=NewFollower, tries=5, timeout=30)
async def follower_push(ctx: conveyor.Context, input: NewFollower) -> dict:
    """Tell a user that someone new follows them."""
    async with api("PUSH_API_URL") as push:
        response = await push.post(
            "/notifications",
            json={"user": str(input.user_id), "title": "New follower", "body": f"{input.follower} follows you now"},
            headers={"Idempotency-Key": str(ctx.job_id)},  # the same on every try: one push
        )
    response.raise_for_status()  # an error is tried again with backoff, five tries in all
    return {"user_id": input.user_id, "notification": response.json()["id"]}


class Employer(BaseModel):
    employer_id: int
    board: str


employer_sync = conveyor.Pipeline(
    "sync_employer",
    input=Employer,
    tries=5,
    timeout=600,
    description="Publish an employer's open positions from its applicant-tracking system.",
)


@employer_sync.stage
async def fetch_postings(ctx: conveyor.Context, input: Employer) -> dict:
    async with api("ATS_API_URL") as ats:
        response = await ats.get(f"/boards/{input.board}/jobs")
    response.raise_for_status()
    return {"postings": [{"ats_id": str(job["id"]), "title": job["title"]} for job in response.json()["jobs"]]}


@employer_sync.stage
async def publish(ctx: conveyor.Context, input: Employer) -> dict:
    """Replace the employer's postings with those fetched, in one transaction."""
    fetched = ctx.outputs["fetch_postings"]["postings"]  # checkpointed: a retry does not fetch again
    async with database().begin() as conn:
        await conn.execute(delete(postings).where(postings.c.employer_id == input.employer_id))
        if fetched:
            await conn.execute(insert(postings), [{"employer_id": input.employer_id, **posting} for posting in fetched])
    return {"employer_id": input.employer_id, "published": len(fetched)}


class Renewal(BaseModel):
    employer_id: int


@conveyor.job("renew_membership", input=Renewal, tries=3, timeout=60, concurrency=1)
async def renew_membership(ctx: conveyor.Context, input: Renewal) -> dict:
    """Charge an employer for another month and extend its membership. Jobs carry the
    employer as their concurrency key: two renewals of one employer never run at once,
    so each charges for the month after the one the last paid for."""
    async with database().connect() as conn:
        employer = (await conn.execute(select(employers).where(employers.c.id == input.employer_id))).one()
    async with api("PAYMENTS_API_URL") as payments:
        response = await payments.post(
            "/charges",
            json={"customer": employer.customer, "amount": employer.plan_cents, "currency": "eur"},
            headers={"Idempotency-Key": f"renewal-{employer.id}-{employer.paid_through}"},  # one charge a month
        )
    if response.status_code == 402:
        raise conveyor.Fail("card_declined", "the employer's card was declined")  # no point trying again
    response.raise_for_status()
    paid_through = employer.paid_through + MONTH
    async with database().begin() as conn:
        await conn.execute(update(employers).where(employers.c.id == employer.id).values(paid_through=paid_through))
    return {"employer_id": employer.id, "charge": response.json()["id"], "paid_through": paid_through.isoformat()}
