"""Video work: probe and vet a source, plan renditions, transcode them concurrently.

These are building blocks for the video stages; they know nothing of jobs or queues.
Every refusal is a `service.errors.JobError` with a precise `type`.
"""

from pipelines.videos.plan import (
    DEFAULT_RENDITIONS,
    Output,
    Rendition,
    RenditionPlan,
    Skipped,
    Thumbnail,
    parse_renditions,
    plan_renditions,
)
from pipelines.videos.probe import OutputInfo, VideoInfo, check_limits, measure, probe
from pipelines.videos.transcode import transcode, transcode_all, transcode_slots

__all__ = [
    "DEFAULT_RENDITIONS",
    "Output",
    "OutputInfo",
    "Rendition",
    "RenditionPlan",
    "Skipped",
    "Thumbnail",
    "VideoInfo",
    "check_limits",
    "measure",
    "parse_renditions",
    "plan_renditions",
    "probe",
    "transcode",
    "transcode_all",
    "transcode_slots",
]
