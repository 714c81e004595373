"""Every kind of job Conveyor runs, and the pipeline that runs it."""

from __future__ import annotations

from pipelines.analytics.export import EXPORT
from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from pipelines.pipeline import Pipeline
from pipelines.videos.pipeline import video_pipeline
from service.config import Settings


def pipelines(settings: Settings) -> tuple[Pipeline, ...]:
    """The pipelines a worker runs, with the limits the settings put on them (timeouts are
    fixed when arq's functions are made, so they are read here, not when a job runs)."""
    return (
        DOCUMENT_PIPELINE, video_pipeline(timeout=settings.video_timeout_seconds),
        NOTIFICATION_PIPELINE, CALLBACK_PIPELINE, EXPORT,
    )
