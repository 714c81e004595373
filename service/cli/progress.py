"""Progress bars on stderr: an upload's bytes, then the job's progress until it ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from conveyor.client import Job


@contextmanager
def upload_bar(size: int) -> Iterator[Callable[[int], None]]:
    """Yields `advance(nbytes)`; the bar disappears once the upload is done."""
    columns = (TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=stderr(), transient=True) as progress:
        task = progress.add_task("upload", total=size)
        yield lambda nbytes: progress.advance(task, nbytes)


def describe(job: Job) -> str:
    stage = f" · {job.stage}" if job.stage else ""
    return f"{job.kind} {short_id(job.id)} {job.status}{stage}"


@contextmanager
def job_bar(job: Job) -> Iterator[Callable[[Job], None]]:
    """Yields `show(job)`, which moves the bar to the job's progress and status."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr()) as progress:
        task = progress.add_task(describe(job), total=100)

        def show(current: Job) -> None:
            progress.update(task, completed=100 * current.progress, description=describe(current))

        show(job)
        yield show
