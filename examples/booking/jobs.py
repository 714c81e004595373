"""The booking site's background work as Conveyor kinds; workers run it with
`CONVEYOR_KINDS=examples.booking.jobs`.

The kinds reach the site's own tables (`BOOKING_DATABASE_URL`), its mail provider
(`MAIL_API_URL`) and the business-profile API (`PROFILE_API_URL`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from pydantic import BaseModel

import conveyor


@asynccontextmanager
async def database() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(os.environ["BOOKING_DATABASE_URL"])
    try:
        yield conn
    finally:
        await conn.close()


def api(variable: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=os.environ[variable], timeout=10)


def checked(response: httpx.Response) -> dict:
    """The provider's answer; when it asks to slow down, the job tries again when it says
    (any other error is retried with backoff until the kind's tries are used)."""
    if response.status_code in (429, 503):
        raise conveyor.Retry(after=float(response.headers.get("Retry-After", "60")))
    response.raise_for_status()
    return response.json()


class ReviewRequest(BaseModel):
    stay_id: int
    email: str
    hotel: str


@conveyor.job("review_request", input=ReviewRequest, tries=5, timeout=30)
async def review_request(ctx: conveyor.Context, input: ReviewRequest) -> dict:
    """Ask a guest who checked out to review their stay."""
    async with api("MAIL_API_URL") as mail:
        response = await mail.post(
            "/messages",
            json={"to": input.email, "template": "review-request", "data": {"hotel": input.hotel}},
            headers={"Idempotency-Key": f"review-request-{input.stay_id}"},  # a retry sends it once
        )
    return {"stay_id": input.stay_id, "message": checked(response)["id"]}


class Hotel(BaseModel):
    hotel_id: int
    place_id: str


profile_sync = conveyor.Pipeline(
    "sync_business_profile",
    input=Hotel,
    tries=5,
    timeout=300,
    description="Copy a hotel's rating and review count from its business profile.",
)


@profile_sync.stage
async def fetch(ctx: conveyor.Context, input: Hotel) -> dict:
    async with api("PROFILE_API_URL") as profiles:
        location = checked(await profiles.get(f"/locations/{input.place_id}"))
    return {"rating": location["rating"], "reviews": location["reviewCount"]}  # checkpointed


@profile_sync.stage
async def store(ctx: conveyor.Context, input: Hotel) -> dict:
    profile = ctx.outputs["fetch"]  # a retry of this stage does not call the API again
    async with database() as db:
        await db.execute(
            "UPDATE booking_hotels SET rating = $2, reviews = $3, synced_at = now() WHERE id = $1",
            input.hotel_id,
            profile["rating"],
            profile["reviews"],
        )
    return {"hotel_id": input.hotel_id, **profile}


class Campaign(BaseModel):
    campaign_id: int


@conveyor.job("send_campaign", input=Campaign, tries=3, timeout=900, concurrency=1)
async def send_campaign(ctx: conveyor.Context, input: Campaign) -> dict:
    """Mail a campaign to its hotel's past guests. Jobs carry the hotel as their
    concurrency key: one campaign per hotel at a time, so a guest never gets two at once,
    while other hotels' campaigns go out beside it."""
    async with database() as db:
        guests = await db.fetch(
            """
            SELECT DISTINCT s.email, c.subject FROM booking_campaigns c JOIN booking_stays s USING (hotel_id)
            WHERE c.id = $1 AND s.checked_out_at IS NOT NULL ORDER BY s.email
            """,
            input.campaign_id,
        )
    sent = ctx.saved["sent"] if ctx.saved else 0  # a retry goes on where the last attempt stopped
    async with api("MAIL_API_URL") as mail:
        for guest in guests[sent:]:
            response = await mail.post(
                "/messages",
                json={"to": guest["email"], "template": "campaign", "data": {"subject": guest["subject"]}},
                headers={"Idempotency-Key": f"campaign-{input.campaign_id}-{guest['email']}"},
            )
            checked(response)
            sent += 1
            await ctx.save({"sent": sent})
            await ctx.progress(sent / len(guests))
    return {"campaign_id": input.campaign_id, "sent": sent}
