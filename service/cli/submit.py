"""`conveyor submit FILE`: upload a document or video and, with --wait, follow its job."""

from __future__ import annotations

import json
from pathlib import Path

import click

from service.cli.options import json_option, key_option, url_option
from service.cli.output import FAILED, CliError, emit_json, guarded, stderr

EXAMPLES = """Examples:

  conveyor submit resume.pdf --wait

  conveyor submit talk.mp4 --renditions 720p,480p --metadata '{"post": 7}'

  CONVEYOR_URL=https://conveyor.example.com CONVEYOR_API_KEY=cvk_… conveyor submit scan.png --json

Exit status with --wait: 0 if the job succeeded, 1 if it failed or was cancelled
(the error is printed), 124 if --timeout passed first."""


def endpoint_for(path: Path) -> tuple[str, str]:
    """(API path, MIME type) for the file, judged from its first bytes as the API does."""
    from service.sniffing import DOCUMENT_TYPES, SNIFF_BYTES, VIDEO_TYPES, sniff

    with path.open("rb") as file:
        content_type = sniff(file.read(SNIFF_BYTES))
    if content_type in DOCUMENT_TYPES:
        return "/v1/documents", content_type
    if content_type in VIDEO_TYPES:
        return "/v1/videos", content_type
    raise CliError(f"{path} is not a PDF, PNG, JPEG, TIFF, MP4, MOV, WebM or MKV file", code=2)


def _json_object(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--metadata is not JSON: {exc}", code=2) from None
    if not isinstance(value, dict):
        raise CliError("--metadata must be a JSON object", code=2)
    return text


@click.command(epilog=EXAMPLES)
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path), help="The file to upload."
)
@click.option("--wait", is_flag=True, help="Show a progress bar (fed by the job's event stream) until the job ends.")
@url_option
@key_option
@click.option("--renditions", help="Videos: renditions to make, e.g. 720p,480p.")
@click.option("--metadata", help="A JSON object kept with the job.")
@click.option("--callback-url", help="URL to notify when the job ends.")
@click.option("--idempotency-key", help="Send twice, get one job.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600.0, help="Seconds --wait waits at most.")
@json_option
@guarded
def submit(
    file: Path,
    wait: bool,
    url: str,
    key: str | None,
    renditions: str | None,
    metadata: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
    timeout: float,
    json_output: bool,
) -> None:
    """Upload FILE (a document or a video, told apart by its bytes) and print the job id.

    The file is streamed from disk, never read into memory.
    """
    from service.cli.api import Api
    from service.cli.progress import CountingFile, job_bar, upload_bar

    path, content_type = endpoint_for(file)
    fields = {"metadata": _json_object(metadata), "callback_url": callback_url}
    if renditions is not None:
        if path != "/v1/videos":
            raise CliError("--renditions applies to videos only", code=2)
        fields["renditions"] = renditions
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with Api(url, key) as api:
        with upload_bar(file.stat().st_size) as advance, CountingFile(str(file), advance) as body:
            job = api.call(
                "POST",
                path,
                headers=headers,
                files={"file": (file.name, body, content_type)},
                data={name: value for name, value in fields.items() if value is not None},
            ).json()
        if not json_output:
            click.echo(job["id"])
        if wait:
            with job_bar(job) as show:
                job = api.follow(job, show, timeout=timeout)
        if json_output:
            emit_json(job)
    if wait and job["status"] != "succeeded":
        error = job.get("error") or {}
        detail = f": {error.get('type')}: {error.get('message')}" if error else ""
        raise CliError(f"job {job['id']} {job['status']}{detail}", code=FAILED)
    if wait:
        stderr().print(f"job {job['id']} succeeded")
