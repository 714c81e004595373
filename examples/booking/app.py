"""The booking site: Starlette on asyncpg, handing its background work to Conveyor.

    BOOKING_DATABASE_URL=postgresql://… CONVEYOR_TENANT=acme CONVEYOR_URL=… CONVEYOR_API_KEY=… \\
        uvicorn --factory examples.booking.app:create_app

Its tables live in the PostgreSQL database Conveyor uses, which is what lets a checkout
create its review request in the checkout's own transaction (`conveyor_enqueue`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conveyor.client import AsyncClient
from conveyor.client.transaction import enqueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS booking_hotels (
    id serial PRIMARY KEY, name text NOT NULL, place_id text NOT NULL,
    rating numeric, reviews integer, synced_at timestamptz
);
CREATE TABLE IF NOT EXISTS booking_stays (
    id serial PRIMARY KEY, hotel_id integer NOT NULL REFERENCES booking_hotels, email text NOT NULL,
    checked_out_at timestamptz
);
CREATE TABLE IF NOT EXISTS booking_campaigns (
    id serial PRIMARY KEY, hotel_id integer NOT NULL REFERENCES booking_hotels, subject text NOT NULL
);
"""


@dataclass(frozen=True)
class Config:
    database_url: str
    tenant: str  # the site's tenant on Conveyor, which conveyor_enqueue names
    conveyor_url: str | None = None  # None: CONVEYOR_URL
    conveyor_key: str | None = None  # None: CONVEYOR_API_KEY
    review_delay: timedelta = timedelta(hours=2)  # after checkout, before the review request

    @classmethod
    def from_env(cls) -> Config:
        return cls(os.environ["BOOKING_DATABASE_URL"], os.environ["CONVEYOR_TENANT"])


async def check_out(conn: asyncpg.Connection, config: Config, stay_id: int) -> uuid.UUID | None:
    """Check a guest out and schedule their review request, in the caller's transaction:
    the request exists if and only if the checkout commits. None: no such stay, or it
    was checked out already."""
    stay = await conn.fetchrow(
        """
        UPDATE booking_stays s SET checked_out_at = now() FROM booking_hotels h
        WHERE s.id = $1 AND s.checked_out_at IS NULL AND h.id = s.hotel_id
        RETURNING s.email, h.name
        """,
        stay_id,
    )
    if stay is None:
        return None
    return await enqueue(
        conn,
        tenant=config.tenant,
        kind="review_request",
        input={"stay_id": stay_id, "email": stay["email"], "hotel": stay["name"]},
        run_at=datetime.now(UTC) + config.review_delay,
    )


async def checkout(request: Request) -> JSONResponse:
    state = request.app.state
    async with state.db.acquire() as conn, conn.transaction():
        job_id = await check_out(conn, state.config, request.path_params["stay_id"])
    if job_id is None:
        return JSONResponse({"error": "no such stay, or it was checked out already"}, status_code=404)
    return JSONResponse({"review_request": str(job_id)})


async def sync_hotels(request: Request) -> JSONResponse:
    """Refresh every hotel's business profile: what the nightly cron calls."""
    hotels = await request.app.state.db.fetch("SELECT id, place_id FROM booking_hotels ORDER BY id")
    syncs = [
        {"kind": "sync_business_profile", "input": {"hotel_id": h["id"], "place_id": h["place_id"]}} for h in hotels
    ]
    jobs = await request.app.state.conveyor.submit_many(syncs) if syncs else []
    return JSONResponse({"jobs": [job.id for job in jobs]}, status_code=202)


async def send_campaign(request: Request) -> JSONResponse:
    campaign_id = request.path_params["campaign_id"]
    hotel_id = await request.app.state.db.fetchval("SELECT hotel_id FROM booking_campaigns WHERE id = $1", campaign_id)
    if hotel_id is None:
        return JSONResponse({"error": "no such campaign"}, status_code=404)
    job = await request.app.state.conveyor.submit(
        "send_campaign",
        {"campaign_id": campaign_id},
        concurrency_key=f"hotel-{hotel_id}",  # one campaign per hotel at a time
        idempotency_key=f"campaign-{campaign_id}",  # a second click gives the same job
    )
    return JSONResponse({"job": job.id, "status": job.status}, status_code=202)


def create_app(config: Config | None = None) -> Starlette:
    config = config or Config.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            asyncpg.create_pool(config.database_url) as db,
            AsyncClient(config.conveyor_url, config.conveyor_key) as conveyor,
        ):
            await db.execute(SCHEMA)
            app.state.config, app.state.db, app.state.conveyor = config, db, conveyor
            yield

    routes = [
        Route("/stays/{stay_id:int}/checkout", checkout, methods=["POST"]),
        Route("/hotels/sync", sync_hotels, methods=["POST"]),
        Route("/campaigns/{campaign_id:int}/send", send_campaign, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
