"""The example apps (examples/) run for real: Conveyor's API and a worker process loading
both apps' kinds from `CONVEYOR_KINDS`, the apps driven in-process (the Starlette one over
httpx's ASGI transport, the Flask one with its test client), their tables in the database
Conveyor uses and the third-party APIs their jobs call served locally
(testkit/example_providers.py). One API and one worker serve the whole module."""

from __future__ import annotations

import os
import uuid
from datetime import date, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import Engine, create_engine, insert, select

from conveyor.client import ApiError, AsyncClient, Client
from examples.booking import app as booking_app
from examples.jobboard import app as jobboard_app
from examples.jobboard.tables import employers, follows, postings, users
from testkit.example_providers import DECLINED, ExampleProviders
from testkit.processes import ApiProcess, WorkerProcess, settings_env
from testkit.service import make_settings, new_tenant, until

KINDS = "examples.booking.jobs,examples.jobboard.jobs"
EXAMPLE_KINDS = {
    *("review_request", "sync_business_profile", "send_campaign"),
    *("follower_push", "sync_employer", "renew_membership"),
}


def sqlalchemy_url(url: str) -> str:
    """The database's URL as SQLAlchemy takes it with psycopg 3, as the job board does."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="module")
def example_settings(database_url, redis_server, tmp_path_factory):
    storage = tmp_path_factory.mktemp("examples") / "storage"
    return make_settings(database_url, redis_server.url, storage, queue_name=f"conveyor-examples-{os.urandom(4).hex()}")


@pytest.fixture(scope="module")
async def conveyor_tenant(example_settings) -> tuple[str, str]:
    """(name, API key) of the tenant both apps use."""
    name = f"examples-{uuid.uuid4().hex[:8]}"
    _, key = await new_tenant(example_settings, name)
    return name, key


@pytest.fixture(scope="module")
def providers():
    server = ExampleProviders().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def conveyor_url(example_settings, conveyor_tenant, providers, tmp_path_factory):
    """Conveyor's API and one worker running the examples' kinds, as deployed; the URL of
    the API once the worker has published the kinds (conveyor_enqueue needs them known)."""
    logs = tmp_path_factory.mktemp("example-logs")
    worker_env = settings_env(
        example_settings,
        conveyor_kinds=KINDS,
        booking_database_url=example_settings.database_url,
        mail_api_url=providers.api("mail"),
        profile_api_url=providers.api("profiles"),
        jobboard_database_url=sqlalchemy_url(example_settings.database_url),
        push_api_url=providers.api("push"),
        ats_api_url=providers.api("ats"),
        payments_api_url=providers.api("payments"),
    )
    api = ApiProcess(settings_env(example_settings), logs / "api.log").start()
    worker = WorkerProcess(worker_env, logs / "worker.log", settings_path="worker.WorkerSettings").start()
    try:
        async with AsyncClient(api.url, conveyor_tenant[1]) as conveyor:

            async def published() -> bool:
                assert worker.alive, worker.log()
                return EXAMPLE_KINDS <= {kind.kind for kind in await conveyor.kinds()}

            await until(published, timeout=60)
        yield api.url
    finally:
        worker.stop()
        api.stop()


@pytest.fixture(scope="module")
async def conveyor(conveyor_url, conveyor_tenant):
    async with AsyncClient(conveyor_url, conveyor_tenant[1]) as client:
        yield client


@pytest.fixture(scope="module")
def conveyor_sync(conveyor_url, conveyor_tenant):
    with Client(conveyor_url, conveyor_tenant[1]) as client:
        yield client


@pytest.fixture(scope="module")
def booking_config(example_settings, conveyor_url, conveyor_tenant) -> booking_app.Config:
    name, key = conveyor_tenant
    return booking_app.Config(example_settings.database_url, name, conveyor_url, key, review_delay=timedelta(0))


@pytest.fixture(scope="module")
async def booking(booking_config):
    """The booking site, its lifespan entered (its tables made), spoken to over ASGI."""
    app = booking_app.create_app(booking_config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://booking") as http,
    ):
        yield http


@pytest.fixture
async def booking_db(booking, booking_config):
    """The site's own connection to its tables."""
    conn = await asyncpg.connect(booking_config.database_url)
    yield conn
    await conn.close()


async def new_hotel(db: asyncpg.Connection, *guests: str) -> int:
    """A hotel with a stay for each guest, none checked out yet; its id."""
    hotel_id = await db.fetchval(
        "INSERT INTO booking_hotels (name, place_id) VALUES ('Hotel Ada', $1) RETURNING id", uuid.uuid4().hex
    )
    for email in guests:
        await db.execute("INSERT INTO booking_stays (hotel_id, email) VALUES ($1, $2)", hotel_id, email)
    return hotel_id


async def stay_of(db: asyncpg.Connection, hotel_id: int) -> int:
    return await db.fetchval("SELECT min(id) FROM booking_stays WHERE hotel_id = $1", hotel_id)


async def test_a_checkout_sends_its_review_request_from_its_own_transaction(booking, booking_db, conveyor, providers):
    stay_id = await stay_of(booking_db, await new_hotel(booking_db, "ada@example.com"))
    response = await booking.post(f"/stays/{stay_id}/checkout")
    again = await booking.post(f"/stays/{stay_id}/checkout")

    assert response.status_code == 200, response.text
    job = await conveyor.wait(response.json()["review_request"], timeout=60)
    assert job.succeeded, job
    assert job.kind == "review_request" and job.result["stay_id"] == stay_id
    [mail] = providers.received("/mail/messages", f"review-request-{stay_id}")
    assert mail.body == {"to": "ada@example.com", "template": "review-request", "data": {"hotel": "Hotel Ada"}}
    assert job.result["message"].startswith("mail-")
    assert again.status_code == 404  # checked out once: one review request


async def test_a_checkout_rolled_back_leaves_no_review_request(booking, booking_db, booking_config, conveyor):
    stay_id = await stay_of(booking_db, await new_hotel(booking_db, "grace@example.com"))
    with pytest.raises(RuntimeError, match="the card was declined"):
        async with booking_db.transaction():
            job_id = await booking_app.check_out(booking_db, booking_config, stay_id)
            raise RuntimeError("the card was declined")  # whatever aborts the checkout

    with pytest.raises(ApiError) as missing:
        await conveyor.get(str(job_id))
    assert missing.value.status == 404
    assert await booking_db.fetchval("SELECT checked_out_at FROM booking_stays WHERE id = $1", stay_id) is None


async def test_the_nightly_sync_runs_each_hotel_through_its_checkpointed_stages(booking, booking_db, conveyor):
    hotel_id = await new_hotel(booking_db)
    response = await booking.post("/hotels/sync")

    assert response.status_code == 202, response.text
    jobs = [await conveyor.wait(job_id, timeout=60) for job_id in response.json()["jobs"]]
    assert all(job.succeeded for job in jobs), [job for job in jobs if not job.succeeded]
    [ours] = [job for job in jobs if job.result["hotel_id"] == hotel_id]
    assert [(stage.name, stage.status) for stage in ours.stages] == [("fetch", "succeeded"), ("store", "succeeded")]
    assert ours.result == {"hotel_id": hotel_id, "rating": 4.6, "reviews": 128}
    hotel = await booking_db.fetchrow("SELECT rating, reviews, synced_at FROM booking_hotels WHERE id = $1", hotel_id)
    assert float(hotel["rating"]) == 4.6 and hotel["reviews"] == 128 and hotel["synced_at"] is not None


async def test_a_campaign_goes_out_under_its_hotels_concurrency_key(booking, booking_db, conveyor, providers):
    guests = ["ada@example.com", "grace@example.com", "alan@example.com"]
    hotel_id = await new_hotel(booking_db, *guests)
    await booking_db.execute("UPDATE booking_stays SET checked_out_at = now() WHERE hotel_id = $1", hotel_id)
    campaign_id = await booking_db.fetchval(
        "INSERT INTO booking_campaigns (hotel_id, subject) VALUES ($1, 'Spring offers') RETURNING id", hotel_id
    )
    first = await booking.post(f"/campaigns/{campaign_id}/send")
    second = await booking.post(f"/campaigns/{campaign_id}/send")

    assert first.status_code == 202, first.text
    assert second.json()["job"] == first.json()["job"]  # its idempotency key: one job
    job = await conveyor.wait(first.json()["job"], timeout=60)
    assert job.succeeded, job
    assert job.result == {"campaign_id": campaign_id, "sent": 3}
    keys = {sent.idempotency_key for sent in providers.received("/mail/messages")}
    assert {f"campaign-{campaign_id}-{email}" for email in guests} <= keys
    kinds = {kind.kind: kind for kind in await conveyor.kinds()}
    assert kinds["send_campaign"].concurrency == 1
    key = await booking_db.fetchval("SELECT concurrency_key FROM jobs WHERE id = $1", uuid.UUID(job.id))
    assert key == f"hotel-{hotel_id}"


# The job board (Flask), moved from RQ.


@pytest.fixture(scope="module")
def jobboard_config(example_settings, conveyor_url, conveyor_tenant) -> jobboard_app.Config:
    name, key = conveyor_tenant
    return jobboard_app.Config(sqlalchemy_url(example_settings.database_url), name, conveyor_url, key)


@pytest.fixture(scope="module")
def jobboard(jobboard_config):
    """The board's Flask app (its tables made)."""
    return jobboard_app.create_app(jobboard_config)


@pytest.fixture(scope="module")
def jobboard_db(jobboard, jobboard_config):
    engine = create_engine(jobboard_config.database_url)
    yield engine
    engine.dispose()


def new_user(db: Engine, name: str) -> int:
    with db.begin() as conn:
        return conn.execute(insert(users).values(name=name).returning(users.c.id)).scalar_one()


def new_employer(db: Engine, customer: str, paid_through: date = date(2026, 5, 1)) -> int:
    values = {"name": "Initech", "ats_board": "initech", "plan_cents": 9900}
    with db.begin() as conn:
        row = insert(employers).values(**values, customer=customer, paid_through=paid_through)
        return conn.execute(row.returning(employers.c.id)).scalar_one()


def test_a_follow_pushes_the_news_from_its_own_transaction(jobboard, jobboard_db, conveyor_sync, providers):
    ada, grace = new_user(jobboard_db, "Ada"), new_user(jobboard_db, "Grace")
    first = jobboard.test_client().post(f"/users/{ada}/followers", json={"follower_id": grace})
    again = jobboard.test_client().post(f"/users/{ada}/followers", json={"follower_id": grace})

    assert first.status_code == 200, first.text
    job = conveyor_sync.wait(first.json["push"], timeout=60)
    assert job.succeeded, job
    assert job.kind == "follower_push" and job.result["user_id"] == ada
    [push] = providers.received("/push/notifications", job.id)
    assert push.body == {"user": str(ada), "title": "New follower", "body": "Grace follows you now"}
    assert job.result["notification"].startswith("push-")
    assert again.json == {"push": None}  # following twice: one follow, one push


def test_a_follow_rolled_back_leaves_no_push(jobboard_db, jobboard_config, conveyor_sync):
    ada, grace = new_user(jobboard_db, "Ada"), new_user(jobboard_db, "Grace")
    with jobboard_db.connect() as conn, conn.begin() as transaction:
        job_id = jobboard_app.add_follower(conn, jobboard_config.tenant, ada, grace)
        transaction.rollback()  # whatever else the request did failed

    assert job_id is not None
    with pytest.raises(ApiError) as missing:
        conveyor_sync.get(str(job_id))
    assert missing.value.status == 404
    with jobboard_db.connect() as conn:
        assert conn.execute(select(follows).where(follows.c.followed_id == ada)).first() is None


def test_the_nightly_sync_publishes_each_employers_postings_stage_by_stage(jobboard, jobboard_db, conveyor_sync):
    employer_id = new_employer(jobboard_db, "cus_initech")
    run = jobboard.test_cli_runner().invoke(args=["sync-employers"])

    assert run.exit_code == 0, run.output
    jobs = [conveyor_sync.wait(job_id, timeout=60) for job_id in run.output.split()]
    assert all(job.succeeded for job in jobs), [job for job in jobs if not job.succeeded]
    [ours] = [job for job in jobs if job.result["employer_id"] == employer_id]
    assert [(stage.name, stage.status) for stage in ours.stages] == [
        ("fetch_postings", "succeeded"),
        ("publish", "succeeded"),
    ]
    assert ours.result == {"employer_id": employer_id, "published": 2}
    with jobboard_db.connect() as conn:
        titles = conn.execute(select(postings.c.title).where(postings.c.employer_id == employer_id)).scalars()
        assert sorted(titles) == ["Backend engineer", "Product designer"]


def test_a_renewal_runs_under_its_employers_concurrency_key(jobboard, jobboard_db, conveyor_sync, providers):
    paying, declined = new_employer(jobboard_db, "cus_initech"), new_employer(jobboard_db, DECLINED)
    first = jobboard.test_client().post(f"/employers/{paying}/renew")
    second = jobboard.test_client().post(f"/employers/{paying}/renew")
    refused = jobboard.test_client().post(f"/employers/{declined}/renew")

    assert first.status_code == 202, first.text
    assert second.json["job"] == first.json["job"]  # its idempotency key: one renewal a month
    job = conveyor_sync.wait(first.json["job"], timeout=60)
    assert job.succeeded, job
    assert job.result["employer_id"] == paying and job.result["paid_through"] == "2026-05-31"
    [charge] = providers.received("/payments/charges", f"renewal-{paying}-2026-05-01")
    assert charge.body == {"customer": "cus_initech", "amount": 9900, "currency": "eur"}
    with jobboard_db.connect() as conn:
        row = select(employers.c.paid_through).where(employers.c.id == paying)
        assert conn.execute(row).scalar_one() == date(2026, 5, 31)
        key = conn.exec_driver_sql("SELECT concurrency_key FROM jobs WHERE id = %s", (uuid.UUID(job.id),)).scalar()
    assert key == f"employer-{paying}"

    failed = conveyor_sync.wait(refused.json["job"], timeout=60)
    assert failed.status == "failed" and failed.attempts == 1  # conveyor.Fail: not tried again
    assert failed.error is not None and failed.error.type == "card_declined"
