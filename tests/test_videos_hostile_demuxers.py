"""Issue 18: a tenant's "video" must never make the worker read the host's files.

Each family of ffmpeg demuxer that opens other files (DASH, HLS, ffconcat, image
sequences) is hidden behind each accepted container's first bytes and pointed at magenta
files the test made. Every such upload is refused (415) or its job fails, and no output of
that colour ever exists. The tricks are first shown to work on an ffmpeg left to guess its
demuxer, so a refusal cannot pass vacuously (all but image sequences, which ffmpeg 5.1's
concat safe mode already stops). Real uvicorn, worker, PostgreSQL and ffmpeg.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.videos import plan_renditions, probe, transcode_all
from pipelines.videos.demux import DEMUXERS
from service.api.submissions import input_key
from service.errors import PermanentError
from service.storage import open_storage
from service.storage.sniffing.video import MATROSKA, MP4, QUICKTIME, WEBM
from testkit.files import multipart_file
from testkit.hostile_videos import (
    WRAPPERS,
    Targets,
    hostile_uploads,
    is_magenta,
    magenta_outputs,
    make_targets,
    naked_ffmpeg_sees,
    tricks,
)
from testkit.service import client, running_worker, wait_for_job
from testkit.video_sources import VideoSources, video_sources  # noqa: F401

pytestmark = [pytest.mark.timeout(180), pytest.mark.integration]
TRICKS = ("dash", "hls", "ffconcat", "image_sequence")
REFUSALS = {"not_a_video", "corrupt_video", "no_video_stream", "unsupported_container"}
"""How a probe may refuse a trick: every one of them ends the job at once, with no output."""


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Targets:
    return make_targets(tmp_path_factory.mktemp("host"))


@pytest.fixture
def worker_settings(settings, tmp_path):
    return settings.model_copy(update={"work_dir": str(tmp_path / "work")})


def beside_targets(targets: Targets, name: str, data: bytes) -> Path:
    """The hostile file next to the host's files, where even ffconcat's safe mode reaches them."""
    path = targets.stream.parent / name
    path.write_bytes(data)
    return path


def video_pipeline(settings):
    [video] = [pipeline for pipeline in registry.pipelines(settings) if pipeline.name == "video"]
    return video


def assert_nothing_of_the_host_shown(*roots: Path) -> None:
    for root in roots:
        assert magenta_outputs(root) == [], f"an output under {root} shows the host's file"


# -- the tricks work on an ffmpeg left to guess ----------------------------------------


@pytest.mark.parametrize("name", ["dash", "hls", "ffconcat", "mov_free_comment/dash"])
def test_an_ffmpeg_left_to_guess_reads_the_hosts_files(targets, name):
    everything = {**tricks(targets), **hostile_uploads(targets)}
    assert is_magenta(naked_ffmpeg_sees(beside_targets(targets, "upload", everything[name])))


# -- the worker: the demuxer is the sniffed container's, and only the one file opens -----


@pytest.mark.parametrize("media_type", sorted(DEMUXERS))
@pytest.mark.parametrize("name", TRICKS)
async def test_probing_a_trick_as_any_accepted_container_fails(targets, name, media_type):
    """As a job a weaker sniffer had let through would be: recorded as a video, it is not one."""
    source = beside_targets(targets, "source", tricks(targets)[name])
    with pytest.raises(PermanentError) as caught:
        await probe(source, media_type)
    assert caught.value.type in REFUSALS


async def test_transcoding_opens_the_source_only_as_its_probed_container(
    targets, video_sources: VideoSources, tmp_path
):
    """A plan made from a real MP4, then the source swapped for each trick: ffmpeg still
    reads it as MP4, fails, and makes nothing."""
    source = targets.stream.parent / "source"
    for name, trick in tricks(targets).items():
        shutil.copy(video_sources.landscape, source)
        plan = plan_renditions(await probe(source, MP4), (144,))
        source.write_bytes(trick)
        out_dir = tmp_path / "out" / name
        out_dir.mkdir(parents=True)
        with pytest.raises(PermanentError) as caught:
            await transcode_all(source, plan, out_dir)
        assert caught.value.type == "transcode_failed", name
        assert list(out_dir.iterdir()) == []


async def test_a_type_that_is_not_an_accepted_container_is_refused(video_sources: VideoSources, tmp_path):
    with pytest.raises(PermanentError) as caught:
        await probe(video_sources.landscape, "application/dash+xml")
    assert caught.value.type == "unsupported_container"
    plan = plan_renditions(await probe(video_sources.landscape, MP4), (144,))
    dash_plan = replace(plan, source=replace(plan.source, container="dash"))
    with pytest.raises(PermanentError) as caught:
        await transcode_all(video_sources.landscape, dash_plan, tmp_path)
    assert caught.value.type == "unsupported_container"
    assert list(tmp_path.iterdir()) == []


# -- through the API, with a real worker ----------------------------------------------


async def test_hostile_uploads_are_refused_or_fail_and_show_nothing_of_the_host(
    api, settings, worker_settings, tenant, targets, tmp_path
):
    uploads = hostile_uploads(targets)
    assert {name.split("/")[1] for name in uploads} == set(TRICKS)
    assert {name.split("/")[0] for name in uploads} == set(WRAPPERS)
    async with client(api.url, tenant[1]) as http:
        responses = {name: await http.post("/v1/videos", files=multipart_file(data, "clip.mp4", "video/mp4"))
                     for name, data in uploads.items()}  # fmt: skip
        statuses = {name: response.status_code for name, response in responses.items()}
        assert set(statuses.values()) <= {202, 415}, statuses
        assert statuses["mov_free_comment/dash"] == 415  # the hole the review found
        accepted = {name: response.json()["id"] for name, response in responses.items() if response.status_code == 202}
        async with running_worker(worker_settings, [video_pipeline(worker_settings)]):
            ended = {name: await wait_for_job(http, job_id) for name, job_id in accepted.items()}
    for name, job in ended.items():
        assert job["status"] == "failed" and job["error"]["type"] in REFUSALS, (name, job)
        assert job["result"] is None
    assert_nothing_of_the_host_shown(tmp_path / "storage", tmp_path / "work")


async def test_a_box_claiming_more_than_the_upload_holds_is_refused_when_it_ends(api, tenant):
    """Judged again once the size is known, past the first 4 KiB the API looks at."""
    ftyp = (24).to_bytes(4, "big") + b"ftypisom\x00\x00\x02\x00isomiso2"
    lying = ftyp + (1 << 20).to_bytes(4, "big") + b"free" + b"\x00" * 8192
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/videos", files=multipart_file(lying, "clip.mp4", "video/mp4"))
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_trick_stored_as_an_accepted_video_fails_in_the_worker(
    api, settings, worker_settings, tenant, targets, video_sources: VideoSources, tmp_path
):
    """Jobs recorded before the sniffer was strict: each trick as each container's upload."""
    storage = open_storage(settings.storage_url)
    await storage.open()
    sources = {MP4: video_sources.landscape, QUICKTIME: video_sources.mov, WEBM: video_sources.webm,
               MATROSKA: video_sources.mkv}  # fmt: skip
    jobs = {}
    async with client(api.url, tenant[1]) as http:
        for media_type, source in sources.items():
            for name, trick in tricks(targets).items():
                response = await http.post(
                    "/v1/videos", files=multipart_file(source.read_bytes(), source.name, "video/mp4")
                )
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]
                await storage.upload(input_key(tenant[0], job_id), beside_targets(targets, "trick", trick), media_type)
                jobs[f"{media_type}/{name}"] = job_id
        async with running_worker(worker_settings, [video_pipeline(worker_settings)]):
            ended = {name: await wait_for_job(http, job_id) for name, job_id in jobs.items()}
    await storage.close()
    for name, job in ended.items():
        assert job["status"] == "failed" and job["error"]["type"] in REFUSALS, (name, job)
    assert_nothing_of_the_host_shown(tmp_path / "storage", tmp_path / "work")
