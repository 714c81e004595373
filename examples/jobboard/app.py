"""The job board: Flask on SQLAlchemy (psycopg), handing its background work to Conveyor.

    export JOBBOARD_DATABASE_URL=postgresql+psycopg://… CONVEYOR_TENANT=acme CONVEYOR_URL=… CONVEYOR_API_KEY=…
    flask --app examples.jobboard.app run
    flask --app examples.jobboard.app sync-employers     # nightly, from cron

Its tables live in the PostgreSQL database Conveyor uses, which is what lets a follow
create its push notification in the follow's own transaction (`conveyor_enqueue`).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import click
from flask import Flask, abort, request
from sqlalchemy import Connection, create_engine, select
from sqlalchemy.dialects.postgresql import insert

from conveyor.client import Client
from conveyor.client.transaction import enqueue_sqlalchemy
from examples.jobboard.tables import employers, follows, metadata, users


@dataclass(frozen=True)
class Config:
    database_url: str
    tenant: str  # the board's tenant on Conveyor, which conveyor_enqueue names
    conveyor_url: str | None = None  # None: CONVEYOR_URL
    conveyor_key: str | None = None  # None: CONVEYOR_API_KEY

    @classmethod
    def from_env(cls) -> Config:
        return cls(os.environ["JOBBOARD_DATABASE_URL"], os.environ["CONVEYOR_TENANT"])


def add_follower(conn: Connection, tenant: str, user_id: int, follower_id: int) -> uuid.UUID | None:
    """Record the follow and the push telling `user_id` of it, in the caller's transaction:
    the push exists if and only if the follow commits. None: already following."""
    follow = insert(follows).values(follower_id=follower_id, followed_id=user_id).on_conflict_do_nothing()
    if conn.execute(follow.returning(follows.c.followed_id)).first() is None:
        return None
    follower = conn.execute(select(users.c.name).where(users.c.id == follower_id)).scalar_one()
    return enqueue_sqlalchemy(
        conn, tenant=tenant, kind="follower_push", input={"user_id": user_id, "follower": follower}
    )


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    engine = create_engine(config.database_url)
    metadata.create_all(engine)
    conveyor = Client(config.conveyor_url, config.conveyor_key)
    app = Flask(__name__)

    @app.post("/users/<int:user_id>/followers")
    def follow(user_id: int) -> dict:
        with engine.begin() as conn:
            job_id = add_follower(conn, config.tenant, user_id, request.get_json()["follower_id"])
        return {"push": str(job_id) if job_id else None}

    @app.post("/employers/<int:employer_id>/renew")
    def renew(employer_id: int) -> tuple[dict, int]:
        with engine.connect() as conn:
            paid_through = conn.execute(
                select(employers.c.paid_through).where(employers.c.id == employer_id)
            ).scalar_one_or_none()
        if paid_through is None:
            abort(404)
        job = conveyor.submit(
            "renew_membership",
            {"employer_id": employer_id},
            concurrency_key=f"employer-{employer_id}",  # one renewal per employer at a time
            idempotency_key=f"renewal-{employer_id}-{paid_through}",  # a second click: the same job
        )
        return {"job": job.id, "status": job.status}, 202

    @app.cli.command("sync-employers")
    def sync_employers() -> None:
        """Sync every employer's postings from its applicant-tracking system (nightly)."""
        with engine.connect() as conn:
            rows = conn.execute(select(employers.c.id, employers.c.ats_board)).all()
        if not rows:
            return
        jobs = conveyor.submit_many(
            [{"kind": "sync_employer", "input": {"employer_id": id_, "board": board}} for id_, board in rows]
        )
        for job in jobs:
            click.echo(job.id)

    return app
