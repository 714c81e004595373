"""`conveyor submit FILE`: upload a document or video and, with --wait, follow its job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.options import DEFAULT_URL, ApiKey, ApiUrl, Json
from service.cli.output import FAILED, TIMED_OUT, CliError, emit_json, guarded, stderr

EXAMPLES = """Examples:

  conveyor submit resume.pdf --wait

  conveyor submit talk.mp4 --renditions 720p,480p --metadata '{"post": 7}'

  CONVEYOR_URL=https://conveyor.example.com CONVEYOR_API_KEY=cvk_… conveyor submit scan.png --json

Exit status with --wait: 0 if the job succeeded, 1 if it failed or was cancelled
(the error is printed), 124 if --timeout passed first."""


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--metadata is not JSON: {exc}", code=2) from None
    if not isinstance(value, dict):
        raise CliError("--metadata must be a JSON object", code=2)
    return value


def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to upload.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Show a progress bar (fed by the job's event stream) until the job ends.")
    ] = False,
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    renditions: Annotated[str | None, typer.Option(help="Videos: renditions to make, e.g. 720p,480p.")] = None,
    metadata: Annotated[str | None, typer.Option(help="A JSON object kept with the job.")] = None,
    callback_url: Annotated[str | None, typer.Option(help="URL to notify when the job ends.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Send twice, get one job.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds --wait waits at most.")] = 3600.0,
    json_output: Json = False,
) -> None:
    """Upload FILE (a document or a video, told apart by its bytes) and print the job id.

    The file is streamed from disk, never read into memory.
    """
    from conveyor.client import UnsupportedFile
    from conveyor.client.calls import UploadOptions
    from conveyor.client.content import VIDEOS, upload_target
    from service.cli.api import connect
    from service.cli.progress import job_bar, upload_bar

    options: UploadOptions = {}
    if metadata is not None:
        options["metadata"] = _json_object(metadata)
    if callback_url is not None:
        options["callback_url"] = callback_url
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    if renditions is not None:
        target = upload_target(file)
        if target is not None and target[0] != VIDEOS:
            raise CliError("--renditions applies to videos only", code=2)
        options["renditions"] = renditions
    with connect(url, key) as api:
        try:
            with upload_bar(file.stat().st_size) as advance:
                options["progress"] = advance
                job = api.upload(file, **options)
        except UnsupportedFile as exc:
            raise CliError(str(exc), code=2) from None
        if not json_output:
            typer.echo(job.id)
        if wait:
            with job_bar(job) as show:
                try:
                    for state in api.follow(job, timeout=timeout):
                        show(state)
                        job = state
                except TimeoutError as exc:
                    raise CliError(str(exc), code=TIMED_OUT) from None
        if json_output:
            emit_json(job.to_dict())
    if wait and not job.succeeded:
        detail = f": {job.error.type}: {job.error.message}" if job.error else ""
        raise CliError(f"job {job.id} {job.status}{detail}", code=FAILED)
    if wait:
        stderr().print(f"job {job.id} succeeded")


command = guarded(submit)
