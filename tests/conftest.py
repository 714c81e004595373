import os

import pytest

from pipelines import runner
from pipelines.documents.pages import PageReaders
from testkit import postgres
from testkit.redis_server import RedisServer
from testkit.service import ApiServer, make_settings, new_tenant

# Fixtures that start a server or a process (`video_sources` runs ffmpeg): a test using any
# of them, directly or through another fixture, is `integration`.
SERVER_FIXTURES = frozenset(
    {
        "postgres_server",
        "database_url",
        "empty_database_url",
        "redis_server",
        "s3_server",
        "settings",
        "api",
        "tenant",
        "textract_server",
        "llm_servers",
        "page_readers",
        "stage_counter",
        "video_sources",
    }
)


def pytest_collection_modifyitems(items):
    """Mark `integration` every test that needs a server, so `-m "not integration"` is fast."""
    for item in items:
        if SERVER_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres_server():
    """The suite's own PostgreSQL (testkit/postgres.py), up before any database is made."""
    with postgres.private_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def empty_database_url(postgres_server):
    """A brand-new, empty database (no schema) for this test session."""
    name = await postgres.create_database()
    yield postgres.database_url(name)
    await postgres.drop_database(name)


@pytest.fixture(scope="session")
async def database_url(postgres_server):
    """A database migrated to head, shared by the session's tests (tenants keep them apart)."""
    from service.databases.migrate import upgrade_async

    name = await postgres.create_database()
    url = postgres.database_url(name)
    await upgrade_async(url)
    yield url
    await postgres.drop_database(name)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 over HTTP; sets the standard AWS_* variables for the session."""
    from testkit.s3_server import CREDENTIALS, S3Server

    os.environ.update(CREDENTIALS)
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(database_url, redis_server, tmp_path):
    """Settings for one test: its own queue name, so tests never take each other's jobs."""
    return make_settings(
        database_url, redis_server.url, tmp_path / "storage", queue_name=f"conveyor-test-{os.urandom(4).hex()}"
    )


@pytest.fixture
async def api(settings):
    async with ApiServer(settings) as server:
        yield server


@pytest.fixture
async def tenant(settings):
    """(tenant_id, api_key) of a new tenant."""
    return await new_tenant(settings)


@pytest.fixture(scope="session")
def textract_server(s3_server):
    """The local Textract, reading moto's S3, its bucket (`textract_server.BUCKET`) created."""
    import boto3

    from testkit.textract_server import BUCKET, TextractServer

    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket=BUCKET)
    server = TextractServer(s3_server.endpoint_url)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llm_servers():
    """The local OpenAI-compatible and Gemini servers."""
    from testkit.llm_servers import LLMServers

    servers = LLMServers()
    servers.start()
    yield servers
    servers.stop()


@pytest.fixture
async def page_readers():
    readers = PageReaders(concurrency=2)
    yield readers
    await readers.aclose()


@pytest.fixture
def stage_counter():
    """The HTTP server the fault tests' stages report to (testkit/stage_counter.py)."""
    from testkit.stage_counter import StageCounter

    server = StageCounter().start()
    yield server
    server.stop()


@pytest.fixture
def quick_retries(monkeypatch):
    """Retries after the runner's half-second floor instead of backing off from 2 s, for tests
    that wait for a job to use all its tries (a `document` job has 5, whatever a test's own
    pipeline of that name says: the API sets them)."""
    monkeypatch.setattr(runner, "BACKOFF_BASE", 0.01)
