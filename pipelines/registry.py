"""Every kind of job Conveyor runs, and the pipeline that runs it."""

from __future__ import annotations

from pipelines.analytics.export import EXPORT
from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from pipelines.pipeline import Pipeline
from pipelines.videos.pipeline import VIDEO_PIPELINE

PIPELINES: tuple[Pipeline, ...] = (
    DOCUMENT_PIPELINE, VIDEO_PIPELINE, NOTIFICATION_PIPELINE, CALLBACK_PIPELINE, EXPORT,
)
