"""Progress bars on stderr: an upload's bytes, then the job's progress until it ends."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from service.cli.output import short_id, stderr


class CountingFile(io.FileIO):
    """A file that reports each chunk read, so httpx can stream it without holding it."""

    def __init__(self, path: str, on_read: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self.on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.on_read(len(chunk))
        return chunk


@contextmanager
def upload_bar(size: int) -> Iterator[Callable[[int], None]]:
    """Yields `advance(nbytes)`; the bar disappears once the upload is done."""
    columns = (TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=stderr(), transient=True) as progress:
        task = progress.add_task("upload", total=size)
        yield lambda nbytes: progress.advance(task, nbytes)


def describe(job: dict) -> str:
    stage = f" · {job['stage']}" if job.get("stage") else ""
    return f"{job['kind']} {short_id(job['id'])} {job['status']}{stage}"


@contextmanager
def job_bar(job: dict) -> Iterator[Callable[[dict], None]]:
    """Yields `show(job)`, which moves the bar to the job's progress and status."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr()) as progress:
        task = progress.add_task(describe(job), total=100)

        def show(current: dict) -> None:
            progress.update(task, completed=100 * float(current.get("progress") or 0), description=describe(current))

        show(job)
        yield show
