"""What the end-to-end video tests share: the worker's settings and pipeline, its leftover
temporary files, and an upload to POST /v1/videos."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conveyor.kinds import Pipeline
from pipelines import registry


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
