"""The video job: probe the upload, then make its renditions and thumbnail.

`probe` fetches the source from storage (the worker may be on another host than the API)
into the attempt's scratch directory, reads it only as the container the API sniffed
(`demux`), refuses what is broken or absurd before any CPU is spent, and checkpoints the
plan. `transcode` runs the plan's ffmpegs in the worker's shared slots; each output is
measured, uploaded as it finishes and checkpointed, so a resumed job only makes what is
missing. The scratch directory goes when the attempt ends.

Memory does not grow with the video (2 GB passes as well as 2 MB): the source streams from
storage to disk in chunks, ffmpeg reads and writes files, and outputs stream back in
parts (S3 multipart).
"""

from __future__ import annotations

import asyncio
import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.kinds import Pipeline, Stage
from pipelines.videos.plan import (
    DEFAULT_RENDITIONS,
    Output,
    Rendition,
    RenditionPlan,
    Skipped,
    Thumbnail,
    plan_renditions,
)
from pipelines.videos.probe import VideoInfo, check_limits, measure, probe
from pipelines.videos.transcode import transcode_all, transcode_slots
from service.config import Settings
from service.errors import PermanentError
from service.storage import ObjectNotFound, job_prefix

if TYPE_CHECKING:
    from pipelines.job_run import JobRun

SOURCE_NAME = "source"


def output_key(run: JobRun, filename: str) -> str:
    """Next to the upload, inside the tenant's prefix."""
    return job_prefix(run.job["tenant_id"], run.job_id) + filename


async def fetch_source(run: JobRun) -> Path:
    """The upload on this host's disk, downloaded (streamed) once per attempt for all stages."""
    path = run.workdir() / SOURCE_NAME
    if path.exists():
        return path
    partial = path.with_name(f"{SOURCE_NAME}.partial")
    try:
        await run.resources.storage.download(run.payload["input"]["key"], partial)
    except ObjectNotFound:
        raise PermanentError("the uploaded video is no longer in storage", type="input_missing") from None
    partial.replace(path)
    return path


# -- probe --------------------------------------------------------------------------------


async def probe_stage(run: JobRun, input: dict) -> dict:
    source = await fetch_source(run)
    info = await probe(source, run.payload["input"].get("content_type"))
    check_limits(info, run.settings)
    plan = plan_renditions(info, run.payload.get("renditions") or DEFAULT_RENDITIONS)
    return {"source": source_summary(info), "plan": plan_to_json(plan)}


def source_summary(info: VideoInfo) -> dict:
    """The source as a client sees it: displayed size (rotation and pixel shape applied)."""
    return {
        "width": info.display_width,
        "height": info.display_height,
        "duration": round(info.duration, 3),
        "fps": round(info.fps, 3),
        "container": info.container,
        "video_codec": info.video_codec,
        "audio_codec": info.audio_codec,
    }


def plan_to_json(plan: RenditionPlan) -> dict:
    data = dataclasses.asdict(plan)
    data["source"]["sample_aspect_ratio"] = str(plan.source.sample_aspect_ratio)
    return data


def plan_from_json(data: dict) -> RenditionPlan:
    source = VideoInfo(**{**data["source"], "sample_aspect_ratio": Fraction(data["source"]["sample_aspect_ratio"])})
    return RenditionPlan(
        source=source,
        renditions=tuple(Rendition(**rendition) for rendition in data["renditions"]),
        skipped=tuple(Skipped(**skipped) for skipped in data["skipped"]),
        thumbnail=Thumbnail(**data["thumbnail"]),
    )


# -- transcode ----------------------------------------------------------------------------


async def transcode_stage(run: JobRun, input: dict) -> dict:
    plan = plan_from_json(run.outputs["probe"]["plan"])
    finished: dict[str, dict] = dict((run.saved or {}).get("outputs", {}))
    if all(output.name in finished for output in plan.outputs):
        return {"outputs": finished}  # everything was uploaded before a crash
    source = await fetch_source(run)
    out_dir = run.workdir() / "outputs"
    out_dir.mkdir(exist_ok=True)
    lock = asyncio.Lock()

    async def store(output: Output, path: Path) -> None:
        entry = await store_output(run, output, path)
        async with lock:  # checkpoints are whole dicts: never let an older one land last
            finished[output.name] = entry
            await run.save({"outputs": dict(finished)})

    await transcode_all(
        source, plan, out_dir,
        on_progress=run.progress, on_rendition_done=store, done=frozenset(finished),
        slots=run.shared,
    )  # fmt: skip
    return {"outputs": finished}


async def store_output(run: JobRun, output: Output, path: Path) -> dict:
    """Verify a finished file, upload it (multipart when large), free the disk; its result entry."""
    measured = await measure(path)
    key = output_key(run, output.filename)
    content_type = "video/mp4" if isinstance(output, Rendition) else "image/jpeg"
    await run.resources.storage.upload(key, path, content_type)
    await asyncio.to_thread(path.unlink)
    entry = {
        "name": output.name,
        "width": measured.width,
        "height": measured.height,
        "bytes": measured.bytes,
        "content_type": content_type,
        "key": key,
    }
    if isinstance(output, Rendition):
        duration = None if measured.duration is None else round(measured.duration, 3)
        entry |= {
            "duration": duration,
            "video_codec": measured.video_codec,
            "audio_codec": measured.audio_codec,
            "faststart": measured.faststart,
        }
    return entry


# -- the job ------------------------------------------------------------------------------


def video_result(outputs: dict[str, dict]) -> dict:
    """Renditions in the plan's order (largest first), what was skipped and why, the thumbnail."""
    plan, made = outputs["probe"]["plan"], outputs["transcode"]["outputs"]
    return {
        "source": outputs["probe"]["source"],
        "renditions": [made[rendition["name"]] for rendition in plan["renditions"]],
        "skipped": plan["skipped"],
        "thumbnail": made[plan["thumbnail"]["name"]],
    }


def video_timeout(settings: Settings) -> float:
    """`VIDEO_TIMEOUT_SECONDS` bounds one attempt, ffmpegs included."""
    return settings.video_timeout_seconds


VIDEO_PIPELINE = Pipeline(
    "video",
    (Stage("probe", probe_stage, weight=1), Stage("transcode", transcode_stage, weight=19)),
    timeout=video_timeout,
    tries=3,
    shared=lambda settings, _redis: transcode_slots(settings),  # the host's ffmpeg slots, for every video job
    result=video_result,
    description="Transcode a video to the renditions asked for (H.264/AAC MP4) and take a thumbnail.",
    endpoint="/v1/videos",
)
