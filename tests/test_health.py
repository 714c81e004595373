"""/livez and /readyz with each dependency down; `arq worker.WorkerSettings --check`."""

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from conveyor.kinds import Pipeline, Stage
from testkit.net import free_port
from testkit.service import ADMIN_KEY, ApiServer, client, make_settings, running_worker

HEALTH = "application/health+json"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})


async def readyz(api) -> tuple[int, dict]:
    """The detailed view, as the operator (with the admin key) sees it."""
    async with client(api.url, ADMIN_KEY) as http:
        response = await http.get("/readyz")
    assert response.headers["content-type"] == HEALTH
    return response.status_code, response.json()


async def test_livez_is_cheap_and_open(api):
    async with client(api.url) as http:
        response = await http.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "pass"}


async def test_ready_without_workers_warns(database_url, tmp_path):
    """On a Redis of its own: workers of other tests must not count."""
    from testkit.redis_server import RedisServer
    from testkit.service import ApiServer, make_settings

    lonely = RedisServer()
    lonely.start()
    try:
        async with ApiServer(make_settings(database_url, lonely.url, tmp_path / "storage", admin_key=ADMIN_KEY)) as api:
            status, body = await readyz(api)
    finally:
        lonely.stop()
    assert status == 200 and body["status"] == "warn"
    assert body["checks"]["workers"][0]["status"] == "warn"
    assert {body["checks"][name][0]["status"] for name in ("database", "redis", "storage")} == {"pass"}


async def _nothing(run, input):
    return {}


async def test_ready_with_a_fresh_worker_passes(api, settings):
    async with running_worker(settings, [Pipeline("document", (Stage("store", _nothing),), timeout=30)]):
        for _ in range(100):
            status, body = await readyz(api)
            if body["checks"]["workers"][0]["status"] == "pass":
                break
            await asyncio.sleep(0.1)
    assert status == 200 and body["status"] == "pass"
    assert body["checks"]["workers"][0]["observedValue"] >= 1


async def test_redis_down_is_not_ready(api, redis_server):
    redis_server.stop()
    try:
        status, body = await readyz(api)
    finally:
        redis_server.start()
    assert status == 503 and body["status"] == "fail"
    assert body["checks"]["redis"][0]["status"] == "fail"
    assert body["checks"]["database"][0]["status"] == "pass"
    status, body = await readyz(api)
    assert body["checks"]["redis"][0]["status"] == "pass"


async def test_unwritable_storage_is_not_ready(api, settings):
    root = Path(settings.storage_url.removeprefix("file://"))
    shutil.rmtree(root)
    root.write_text("a file where the storage directory should be")  # unwritable, even for root
    try:
        status, body = await readyz(api)
    finally:
        root.unlink()
        root.mkdir()
    assert status == 503 and body["checks"]["storage"][0]["status"] == "fail"
    assert "not writable" in body["checks"]["storage"][0]["output"]
    assert (await readyz(api))[1]["checks"]["storage"][0]["status"] == "pass"


async def test_unreachable_database_is_not_ready(redis_server, tmp_path):
    settings = make_settings(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        redis_server.url,
        tmp_path / "storage",
        db_connect_timeout=1.0,
        admin_key=ADMIN_KEY,
    )
    async with ApiServer(settings) as api:
        status, body = await readyz(api)
    assert status == 503 and body["status"] == "fail"
    primary = body["checks"]["database"][0]
    assert primary["role"] == "primary" and primary["status"] == "fail"


def _arq(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "worker.WorkerSettings", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _check(env: dict) -> int:
    process = _arq("--check", env=env)
    process.communicate(timeout=30)
    return process.returncode


@pytest.mark.timeout(90)
async def test_arq_check_sees_a_running_worker(database_url, redis_server, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "STORAGE_URL": f"file://{tmp_path}/storage",
        "QUEUE_NAME": f"check-{os.urandom(3).hex()}",
        "LOG_JSON": "false",
    }
    assert await asyncio.to_thread(_check, env) == 1  # nobody has written the health key yet
    worker = _arq(env=env)
    try:
        for _ in range(60):
            if await asyncio.to_thread(_check, env) == 0:
                break
            assert worker.poll() is None, worker.communicate()[0]
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("arq --check never passed with a worker running")
    finally:
        worker.terminate()
        output = await asyncio.to_thread(worker.communicate, timeout=30)
    assert worker.returncode == 0, output[0][-2000:]


async def test_anonymous_readyz_tells_each_status_and_nothing_else(database_url, redis_server, tmp_path):
    """A dead replica whose URL names a host, port, user and database: anonymous callers
    (or a wrong key) learn pass/warn/fail per check; only the admin key shows details."""
    port = free_port()
    replica = f"postgresql://replica-reader:hunter2@127.0.0.1:{port}/replica_db"
    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        database_url_read=[replica],
        db_read_connect_timeout=0.5,
        admin_key=ADMIN_KEY,
    )
    async with (
        ApiServer(settings) as api,
        client(api.url) as anonymous,
        client(api.url, "cvk_guess") as guess,
        client(api.url, ADMIN_KEY) as admin,
    ):
        public, guessed, detailed = (
            await anonymous.get("/readyz"),
            await guess.get("/readyz"),
            await admin.get("/readyz"),
        )
    body = public.json()
    assert public.status_code == 200 and body["checks"]["database"] == [{"status": "pass"}, {"status": "warn"}]
    assert all(entry == {"status": entry["status"]} for entries in body["checks"].values() for entry in entries)
    for leak in (str(port), "127.0.0.1", "replica_db", "replica-reader", database_url.rsplit("/", 1)[1], str(tmp_path)):
        assert leak not in public.text, leak
    assert guessed.json() == body
    assert detailed.json()["checks"]["database"][1]["role"] == "replica" and str(port) in detailed.text
