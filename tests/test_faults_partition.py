"""A worker host is cut off from Redis and PostgreSQL mid-job (its veth goes down): its
job resumes on a worker elsewhere once its heartbeat expires, and when the link comes
back its late writes are fenced off by the attempt number: the newer result stands. It
takes its advisory lock back from the session the server kept for it through the cut."""

from __future__ import annotations

import asyncio
import json
import shutil

import asyncpg
import pytest

from pipelines.maintenance.session import LOCK_CLASS, lock_key
from service.databases.migrate import upgrade_async
from testkit.chaos import job_rows, stage_rows, submit, wait_until_ended
from testkit.net import free_port
from testkit.netns import NetNamespace, netns_permitted
from testkit.pg_cluster import PgCluster
from testkit.processes import WorkerProcess, settings_env
from testkit.redis_server import RedisServer
from testkit.service import ApiServer, client, make_settings, new_tenant
from testkit.stage_counter import StageCounter

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration, pytest.mark.xdist_group("netns")]


@pytest.fixture
def namespace():
    why_not = "the ip command is missing" if shutil.which("ip") is None else netns_permitted()
    if why_not:
        pytest.skip(why_not)
    space = NetNamespace().create()
    yield space
    space.delete()


@pytest.fixture
def services(namespace):
    """Redis and PostgreSQL listening on loopback and on the veth's host side."""
    redis_server = RedisServer(bind=("127.0.0.1", namespace.host_address))
    cluster = PgCluster(free_port(), listen=("127.0.0.1", namespace.host_address), trust=(namespace.cidr,)).init()
    redis_server.start()
    cluster.start()
    counter = StageCounter(host="0.0.0.0").start()
    yield redis_server, cluster, counter
    counter.stop()
    redis_server.stop()
    cluster.destroy()


async def _wait_for(predicate, what: str, timeout: float = 30, explain=lambda: "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"{what} within {timeout}s\n{explain()}"
        await asyncio.sleep(0.2)


async def _lock_holder(database_url: str, worker_id: str) -> int | None:
    """The backend holding the worker's advisory lock (pipelines/maintenance/session.py), if any."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted",
            LOCK_CLASS,
            lock_key(worker_id),
        )
    finally:
        await conn.close()


async def test_a_cut_off_worker_is_replaced_and_fenced(namespace, services, tmp_path):
    redis_server, cluster, counter = services
    await upgrade_async(cluster.url())
    settings = make_settings(cluster.url(), redis_server.url, tmp_path / "storage", queue_name="partition")
    remote = settings.model_copy(
        update={
            "database_url": cluster.url(host=namespace.host_address),
            "redis_url": f"redis://{namespace.host_address}:{redis_server.port}/0",
        }
    )
    counter_url = f"http://{namespace.host_address}:{counter.served.port}"
    gate = tmp_path / "gate"
    cut_off = WorkerProcess(
        settings_env(remote, chaos_counter_url=counter_url, chaos_gate_file=gate),
        tmp_path / "cut-off.log",
        netns=namespace.name,
    ).start()
    elsewhere = WorkerProcess(
        settings_env(settings, chaos_counter_url=f"http://127.0.0.1:{counter.served.port}"), tmp_path / "elsewhere.log"
    )
    _, key = await new_tenant(settings)
    try:
        async with ApiServer(settings) as api, client(api.url, key) as http:
            job_id = (await submit(http, 1)).json()["id"]

            async def waiting_at_the_gate():
                return (await stage_rows(settings.database_url, [job_id])).get((job_id, "work"), {}).get(
                    "status"
                ) == "running"

            await _wait_for(waiting_at_the_gate, "the cut-off worker started `work`", explain=cut_off.log)
            worker_id = (await job_rows(settings.database_url, [job_id]))[job_id]["worker_id"]
            assert worker_id.split(":")[1] == str(cut_off.pid)
            session_before = await _lock_holder(settings.database_url, worker_id)
            assert session_before is not None, cut_off.log()
            namespace.cut()
            elsewhere.start()
            rows = await wait_until_ended(settings.database_url, [job_id], timeout=45)
            before = rows[job_id]

            async def lock_given_up():  # a cut shorter than its check would leave the old session alive
                return "worker lock not held" in cut_off.log()

            await _wait_for(lock_given_up, "the cut-off worker saw its lock's session go silent", explain=cut_off.log)
            namespace.join()
            gate.touch()

            async def late_report_arrived():
                return any(r.attempt == 1 and r.stage == "work" for r in counter.for_job(job_id))

            async def fenced_off():
                return "fenced off" in cut_off.log()

            await _wait_for(late_report_arrived, "the cut-off worker's late stage ran", explain=cut_off.log)
            await _wait_for(fenced_off, "the cut-off worker's late write was fenced", explain=cut_off.log)

            async def lock_taken_back():  # from the session the server kept through the cut
                return await _lock_holder(settings.database_url, worker_id) not in (None, session_before)

            await _wait_for(lock_taken_back, "the cut-off worker took its lock again", explain=cut_off.log)
            after = (await job_rows(settings.database_url, [job_id]))[job_id]
            stages = await stage_rows(settings.database_url, [job_id])
    finally:
        cut_off.stop()
        elsewhere.stop()
    assert before["status"] == "succeeded" and before["attempts"] == 2, elsewhere.log()
    assert json.loads(before["result"])["attempt"] == 2
    assert dict(after) == dict(before)  # the stale worker overwrote nothing
    assert stages[(job_id, "work")]["attempt"] == 2 and stages[(job_id, "work")]["status"] == "succeeded"
    assert stages[(job_id, "fetch")]["attempt"] == 1  # finished before the cut: not redone
