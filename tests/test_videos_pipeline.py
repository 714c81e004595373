"""Video jobs end to end: uvicorn, an arq worker, PostgreSQL, Redis, real ffmpeg, moto's S3."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import boto3
import httpx
import psutil
import pytest
from PIL import Image
from redis.asyncio import Redis

from conveyor.kinds import Pipeline, Stage
from pipelines import registry
from pipelines.videos import measure
from service.config import Settings
from service.queue import events
from testkit.net import free_port, wait_for_port
from testkit.processes import tool_children
from testkit.service import ApiServer, client, make_settings, new_tenant, running_worker, wait_for_job
from testkit.video_sources import VideoSources, video_sources  # noqa: F401

PROBLEM = "application/problem+json"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def worker_settings(settings, tmp_path):
    """The test's settings, with the worker's temporary files where the test can see them."""
    return settings.model_copy(update={"work_dir": str(tmp_path / "work")})


def video_pipeline(settings) -> Pipeline:
    """The video pipeline as the worker builds it from its settings."""
    [video] = [pipeline for pipeline in registry.pipelines(settings) if pipeline.name == "video"]
    return video


def leftover_temp_files(settings) -> list[Path]:
    root = Path(settings.work_dir)
    return list(root.rglob("*")) if root.exists() else []


async def post_video(http: httpx.AsyncClient, path: Path, **fields: str) -> httpx.Response:
    return await http.post("/v1/videos", files={"file": (path.name, path.read_bytes(), "video/mp4")}, data=fields)


async def fetch(http: httpx.AsyncClient, url: str, path: Path) -> Path:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return path


async def check_ranges(http: httpx.AsyncClient, url: str, whole: bytes) -> None:
    """The file seeks as a player would: one range at a time, 206 with `Content-Range`; a
    range past the end is 416 naming the size."""
    size = len(whole)
    assert (await http.get(url)).headers["accept-ranges"] == "bytes"
    for header, first, last in (
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-500", size - 500, size - 1),
        (f"bytes=10-{size + 50}", 10, size - 1),
    ):
        response = await http.get(url, headers={"Range": header})
        assert response.status_code == 206, (header, response.text)
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert response.content == whole[first : last + 1]
    beyond = await http.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-type"] == PROBLEM
    assert beyond.headers["content-range"] == f"bytes */{size}"


async def job_events(settings, job_id: str) -> list[dict]:
    async with Redis.from_url(settings.redis_url) as redis:
        entries = await redis.xrange(events.stream_key(job_id))
    return [json.loads(fields[b"data"]) for _, fields in entries]


async def test_upload_becomes_renditions_and_a_thumbnail_served_by_the_api(
    api, settings, worker_settings, tenant, video_sources: VideoSources, tmp_path
):
    """A 480p source with the default ladder: 480p is made, 720p is skipped (it would upscale)."""
    async with client(api.url, tenant[1]) as http:
        response = await post_video(http, video_sources.silent_480p)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["kind"] == "video" and job["status"] == "queued"
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        async with running_worker(worker_settings, [video_pipeline(worker_settings)]):
            done = await wait_for_job(http, job["id"])
        assert done["status"] == "succeeded", done
        result = done["result"]
        [rendition] = result["renditions"]
        assert (rendition["name"], rendition["width"], rendition["height"]) == ("480p", 854, 480)
        assert rendition["duration"] == pytest.approx(2.0, abs=0.2)
        assert [skipped["name"] for skipped in result["skipped"]] == ["720p"]
        assert "upscale" in result["skipped"][0]["reason"]
        assert (result["source"]["width"], result["source"]["height"]) == (854, 480)
        assert "key" not in rendition and rendition["url"].startswith(api.url)

        video = await measure(await fetch(http, rendition["url"], tmp_path / "480p.mp4"))
        assert (video.width, video.height, video.video_codec, video.audio_codec) == (854, 480, "h264", None)
        assert video.bytes == rendition["bytes"] and video.faststart
        await check_ranges(http, rendition["url"], (tmp_path / "480p.mp4").read_bytes())
        thumbnail = await fetch(http, result["thumbnail"]["url"], tmp_path / "thumbnail.jpg")
        with Image.open(thumbnail) as image:
            assert (image.format, image.size) == ("JPEG", (640, 360))

        _, other_key = await new_tenant(settings)
        async with client(api.url, other_key) as stranger:
            assert (await stranger.get(rendition["url"])).status_code == 404
        assert (await http.get(f"/v1/jobs/{job['id']}/files/original")).status_code == 404
        listed = (await http.get("/v1/jobs", params={"kind": "video"})).json()["items"]
        assert listed[0]["result"]["renditions"][0]["url"] == rendition["url"]

    assert [(stage["name"], stage["status"]) for stage in done["stages"]] == [
        ("probe", "succeeded"),
        ("transcode", "succeeded"),
    ]
    assert done["progress"] == 1
    seen = [
        (event["stage"], event["progress"])
        for event in await job_events(settings, job["id"])
        if "progress" in event and "stage" in event
    ]
    assert [progress for _, progress in seen] == sorted(progress for _, progress in seen)  # never backwards
    assert any(stage == "transcode" and 0.05 <= progress < 1 for stage, progress in seen)  # ffmpeg's own progress
    assert leftover_temp_files(worker_settings) == []


async def test_renditions_on_s3_come_with_presigned_urls(
    s3_server, database_url, redis_server, tmp_path, video_sources: VideoSources
):
    bucket = "videos-" + os.urandom(4).hex()
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket=bucket)
    settings = make_settings(
        database_url, redis_server.url, tmp_path / "unused", storage_url=f"s3://{bucket}/conveyor",
        s3_endpoint_url=s3_server.endpoint_url, work_dir=str(tmp_path / "work"),
        queue_name=f"conveyor-test-{os.urandom(4).hex()}",
    )  # fmt: skip
    _, key = await new_tenant(settings)
    async with ApiServer(settings) as api, client(api.url, key) as http:
        job = (await post_video(http, video_sources.landscape, renditions="360p,240p")).json()
        async with running_worker(settings, [video_pipeline(settings)]):
            done = await wait_for_job(http, job["id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert [(r["name"], r["width"], r["height"]) for r in result["renditions"]] == [
        ("360p", 640, 360),
        ("240p", 426, 240),
    ]
    assert result["skipped"] == []
    async with httpx.AsyncClient() as anyone:  # presigned: no API key needed
        for rendition in result["renditions"]:
            assert rendition["url"].startswith(f"{s3_server.endpoint_url}/{bucket}/conveyor/tenants/")
            made = await measure(await fetch(anyone, rendition["url"], tmp_path / f"{rendition['name']}.mp4"))
            assert (made.width, made.height) == (rendition["width"], rendition["height"])
            assert (made.video_codec, made.audio_codec) == ("h264", "aac")
            assert made.duration == pytest.approx(3.0, abs=0.2)
        thumbnail = await fetch(anyone, result["thumbnail"]["url"], tmp_path / "thumbnail.jpg")
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (640, 360)
    assert leftover_temp_files(settings) == []


async def test_each_accepted_container_is_read_as_the_type_it_was_sniffed(
    api, worker_settings, tenant, video_sources: VideoSources
):
    """MOV, WebM and MKV end to end: the sniffed type travels with the job and names ffmpeg's
    demuxer (MP4 is every other test here)."""
    async with client(api.url, tenant[1]) as http:
        jobs = {name: (await post_video(http, getattr(video_sources, name), renditions="144p")).json()
                for name in ("mov", "webm", "mkv")}  # fmt: skip
        async with running_worker(worker_settings, [video_pipeline(worker_settings)]):
            done = {name: await wait_for_job(http, job["id"]) for name, job in jobs.items()}
    for name, job in done.items():
        assert job["status"] == "succeeded", (name, job)
        assert len(job["result"]["renditions"]) == 1 and job["result"]["thumbnail"]["url"]
    containers = {name: job["result"]["source"]["container"] for name, job in done.items()}
    assert containers == {"mov": "mov,mp4,m4a,3gp,3g2,mj2", "webm": "matroska,webm", "mkv": "matroska,webm"}


async def test_bad_inputs_are_refused_precisely(api, worker_settings, tenant, video_sources: VideoSources):
    async with client(api.url, tenant[1]) as http:
        not_video = await post_video(http, video_sources.random_bytes)
        junk_renditions = await post_video(http, video_sources.landscape, renditions="720p,huge")
        truncated = (await post_video(http, video_sources.truncated)).json()
        audio_only = (await post_video(http, video_sources.audio_only)).json()
        async with running_worker(worker_settings, [video_pipeline(worker_settings)]):
            ended = {
                name: await wait_for_job(http, job["id"])
                for name, job in (("truncated", truncated), ("audio_only", audio_only))
            }
    assert not_video.status_code == 415 and not_video.headers["content-type"] == PROBLEM
    assert junk_renditions.status_code == 422 and junk_renditions.headers["content-type"] == PROBLEM
    assert "renditions" in junk_renditions.json()["detail"] and "'huge'" in junk_renditions.json()["detail"]
    assert ended["truncated"]["status"] == "failed" and ended["truncated"]["error"]["type"] == "corrupt_video"
    assert ended["audio_only"]["status"] == "failed"
    assert ended["audio_only"]["error"] == {"type": "no_video_stream", "message": "the file has no video stream"}
    for job in ended.values():  # refused before any CPU went to transcoding
        assert [(stage["name"], stage["status"]) for stage in job["stages"]] == [
            ("probe", "failed"),
            ("transcode", "skipped"),
        ]
    assert leftover_temp_files(worker_settings) == []


async def test_an_absurd_video_fails_before_transcoding(api, worker_settings, tenant, video_sources: VideoSources):
    strict = worker_settings.model_copy(update={"video_max_duration": 2.0})
    async with client(api.url, tenant[1]) as http, running_worker(strict, [video_pipeline(strict)]):
        job = (await post_video(http, video_sources.landscape)).json()
        failed = await wait_for_job(http, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "video_too_long", "message": "the video lasts 3 s; the limit is 2 s"}
    assert failed["stages"][1]["status"] == "skipped"  # never started


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


MiB = 1024 * 1024
API_RSS_GROWTH_LIMIT = 100 * MiB
LARGE_UPLOAD_BYTES = Settings().max_video_bytes  # 2 GiB: the largest video accepted by default


async def video_body(head: bytes, filler: int):
    """A multipart body of one video (a real MP4 head, then `filler` zero bytes), made as it is sent."""
    chunk = bytes(4 * MiB)
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n' + head
    for _ in range(filler // len(chunk)):
        yield chunk
    yield chunk[: filler % len(chunk)]
    yield b'\r\n--b\r\nContent-Disposition: form-data; name="renditions"\r\n\r\n480p\r\n--b--\r\n'


@pytest.mark.slow  # about 25 s: 2 GiB through a real uvicorn on 2 cores
async def test_the_api_streams_a_2_gib_video_with_bounded_memory(
    database_url, redis_server, tmp_path, tenant, video_sources: VideoSources
):
    """A 2 GiB upload through a real uvicorn process to file storage: its RSS barely moves.

    The worker's side streams too: `fetch_source` copies the upload from storage to disk
    (`copyfile` on file storage, 1 MiB chunks from S3), ffmpeg reads and writes files, and
    outputs go back in parts (pipelines/videos/pipeline.py); none of it holds a file in memory.
    """
    port = free_port()
    storage = tmp_path / "storage"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "STORAGE_URL": f"file://{storage}",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"], cwd=REPO, env=env,
    )  # fmt: skip
    head = video_sources.landscape.read_bytes()[:65536]
    peak = 0
    try:
        await asyncio.to_thread(wait_for_port, port)
        api = psutil.Process(process.pid)

        async def upload(filler: int) -> httpx.Response:
            async with client(f"http://127.0.0.1:{port}", tenant[1]) as http:
                http.timeout = httpx.Timeout(120)
                return await http.post(
                    "/v1/videos",
                    content=video_body(head, filler),
                    headers={"Content-Type": "multipart/form-data; boundary=b"},
                )

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, api.memory_info().rss)
                await asyncio.sleep(0.05)

        warm_up = await upload(MiB)  # every lazy import and pool of the upload path in place
        assert warm_up.status_code == 202, warm_up.text
        before = api.memory_info().rss
        watcher = asyncio.create_task(watch())
        try:
            response = await upload(LARGE_UPLOAD_BYTES - len(head))
        finally:
            watcher.cancel()
        after = api.memory_info().rss
        assert response.status_code == 202, response.text
        sizes = sorted(path.stat().st_size for path in storage.rglob("original"))
        assert sizes == [len(head) + MiB, LARGE_UPLOAD_BYTES]
    finally:
        process.terminate()
        process.wait(timeout=10)
        for path in storage.rglob("original"):
            path.unlink()  # 2 GiB is too much to leave to pytest's kept temporary directories
    growth = max(peak, after) - before
    assert growth < API_RSS_GROWTH_LIMIT, f"the API grew by {growth / MiB:.0f} MiB ({before / MiB:.0f} MiB before)"
