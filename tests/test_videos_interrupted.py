"""Video jobs stopped midway: cancelled, timed out, or their worker crashed. ffmpeg must
die with them and a resumed job must not redo the renditions it had uploaded."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import asyncpg
import httpx

from conveyor.kinds import Pipeline, Stage
from testkit.processes import tool_children
from testkit.service import client, running_worker, wait_for_job
from testkit.video_sources import VideoSources, video_sources  # noqa: F401
from testkit.videos import leftover_temp_files, post_video, video_pipeline, worker_settings  # noqa: F401


async def _wait_for_ffmpeg(http: httpx.AsyncClient, job_id: str) -> None:
    while not tool_children():
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
        assert job["status"] in ("queued", "running"), job
        await asyncio.sleep(0.05)


def quick_document_pipeline() -> Pipeline:
    async def read_size(run, input) -> dict:
        return {"bytes": await run.resources.storage.size(run.payload["input"]["key"])}

    return Pipeline("document", (Stage("store", read_size),), timeout=30)


async def test_cancel_kills_ffmpeg_while_other_jobs_keep_flowing(
    api, worker_settings, tenant, video_sources: VideoSources
):
    from testkit.files import multipart_file, text_pdf

    both = [video_pipeline(worker_settings), quick_document_pipeline()]
    async with client(api.url, tenant[1]) as http, running_worker(worker_settings, both):
        video = (await post_video(http, video_sources.long)).json()
        await _wait_for_ffmpeg(http, video["id"])
        document = (await http.post("/v1/documents", files=multipart_file(text_pdf("meanwhile")))).json()
        assert (await wait_for_job(http, document["id"]))["status"] == "succeeded"
        assert (await http.get(f"/v1/jobs/{video['id']}")).json()["status"] == "running"
        assert (await http.post(f"/v1/jobs/{video['id']}/cancel")).status_code == 202
        ended = await wait_for_job(http, video["id"])
        assert tool_children() == []
    assert ended["status"] == "cancelled"
    assert leftover_temp_files(worker_settings) == []


async def test_timeout_kills_ffmpeg_and_fails_with_the_reason(api, worker_settings, tenant, video_sources):
    """`VIDEO_TIMEOUT_SECONDS` reaches the attempt: ffmpeg is killed when it runs out."""
    impatient = worker_settings.model_copy(update={"video_timeout_seconds": 3.0})
    async with client(api.url, tenant[1]) as http, running_worker(impatient, [video_pipeline(impatient)]):
        job = (await post_video(http, video_sources.long)).json()
        await _wait_for_ffmpeg(http, job["id"])
        ended = await wait_for_job(http, job["id"])
        assert tool_children() == []
    assert ended["status"] == "failed"
    assert ended["error"] == {"type": "timeout", "message": "the job ran longer than 3 s"}
    assert leftover_temp_files(worker_settings) == []


def made_outputs(storage_dir: Path) -> dict[str, int]:
    """Finished outputs in file storage, by name, with their inode (a re-upload replaces it)."""
    return {
        path.name: path.stat().st_ino
        for path in storage_dir.rglob("*")
        if path.suffix in (".mp4", ".jpg") and ".partial" not in path.name
    }


async def transcoded_outputs(settings, job_id: str) -> set[str]:
    """The renditions the transcode stage has checkpointed as uploaded."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        saved = await conn.fetchval(
            "SELECT checkpoint FROM job_stages WHERE job_id = $1::uuid AND name = 'transcode'", job_id
        )
    finally:
        await conn.close()
    return set(json.loads(saved)["outputs"]) if saved else set()


async def test_a_crashed_workers_job_resumes_without_redoing_uploaded_renditions(
    api, settings, tenant, video_sources: VideoSources, tmp_path
):
    source = tmp_path / "twelve_seconds.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-stream_loop",
            "3",
            "-i",
            str(video_sources.landscape),
            "-c",
            "copy",
            str(source),
        ],
        check=True,
        timeout=60,
    )
    one_at_a_time = settings.model_copy(update={"transcode_concurrency": 1, "work_dir": str(tmp_path / "work")})
    storage_dir = tmp_path / "storage"
    async with client(api.url, tenant[1]) as http:
        job = (await post_video(http, source, renditions="360p,240p,144p")).json()
        doomed = await running_worker(one_at_a_time, [video_pipeline(one_at_a_time)]).__aenter__()
        while not (checkpointed := await transcoded_outputs(settings, job["id"])):
            await asyncio.sleep(0.05)
        resources = doomed.worker.ctx["resources"]
        await doomed.crash()
        at_crash = {name: inode for name, inode in made_outputs(storage_dir).items() if Path(name).stem in checkpointed}
        # The process died: its ffmpegs and uploads died with it (crash() cancels an
        # in-process worker's job tasks, which would otherwise live on in this event loop).
        assert tool_children() == []
        await resources.db.close()  # what the dead process held, released for the test session's sake
        async with running_worker(one_at_a_time, [video_pipeline(one_at_a_time)]):
            done = await wait_for_job(http, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert 1 <= len(at_crash) < 4  # the crash came mid-transcode
    final = made_outputs(storage_dir)
    assert sorted(final) == ["144p.mp4", "240p.mp4", "360p.mp4", "thumbnail.jpg"]
    # checkpointed before the crash: not made again (one uploaded but not yet checkpointed may be)
    assert {name: final[name] for name in at_crash} == at_crash
    assert [r["name"] for r in done["result"]["renditions"]] == ["360p", "240p", "144p"]
    assert leftover_temp_files(one_at_a_time) == []
