"""Files a job produced, as links its tenant can follow.

Results keep storage keys (stable, valid on every host). When a job is shown, each entry
of its result that has a `key` gets a `url` in its place: presigned for S3, or for file
storage this API's `/v1/jobs/{id}/files/{name}`, served to the job's tenant only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import StreamingResponse

from service.api.problems import Problem
from service.api.ranges import byte_range


def file_entries(result: object) -> list[dict]:
    """Every object inside a result that names a stored file (a dict with a string `key`)."""
    return list(_walk(result))


def _walk(value: object) -> Iterator[dict]:
    if isinstance(value, dict):
        if isinstance(value.get("key"), str):
            yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def file_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


#: Files that are saved rather than shown: served as attachments named after the entry's `name`.
DOWNLOADED_TYPES = ("text/csv",)


def disposition(entry: dict) -> str | None:
    """The Content-Disposition of a result file: `attachment` with its name for a download
    (an export's CSV), None for what a browser shows inline (renditions, thumbnails)."""
    if not str(entry.get("content_type", "")).startswith(DOWNLOADED_TYPES):
        return None
    name = str(entry.get("name") or file_name(entry["key"]))
    quoted = quote(name)
    return f'attachment; filename="{name}"' if quoted == name else f"attachment; filename*=utf-8''{quoted}"


def find_file(result: object, name: str) -> dict | None:
    """The result entry served as `/files/{name}`; only files the result lists can be served."""
    return next((entry for entry in file_entries(result) if file_name(entry["key"]) == name), None)


async def link_files(request: Request, view: dict) -> dict:
    """The job view with every stored file's `key` replaced by a `url` the tenant can fetch."""
    if not view.get("result"):
        return view
    state = request.app.state
    base = (state.settings.public_url or str(request.base_url)).rstrip("/")
    result = copy.deepcopy(view["result"])
    for entry in file_entries(result):
        presigned = await state.storage.url(entry["key"], disposition=disposition(entry))
        key = entry.pop("key")
        entry["url"] = presigned or f"{base}/v1/jobs/{view['id']}/files/{quote(file_name(key))}"
    return {**view, "result": result}


async def file_response(request: Request, result: object, name: str) -> StreamingResponse:
    """The file `result` lists as `name`, streamed from storage whole or one byte range of
    it (service/api/ranges.py); 404 for a file the result does not list."""
    entry = find_file(result, name)
    storage = request.app.state.storage
    size = await storage.size(entry["key"]) if entry is not None else None
    if entry is None or size is None:
        raise Problem(404, "no such file", type="not-found")
    media_type = entry.get("content_type", "application/octet-stream")
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(size)}
    if attachment := disposition(entry):
        headers["Content-Disposition"] = attachment
    span = None if "if-range" in request.headers else byte_range(request.headers.get("range"), size)
    if span is None:
        return StreamingResponse(storage.read(entry["key"]), media_type=media_type, headers=headers)
    first, last = span
    headers |= {"Content-Length": str(last - first + 1), "Content-Range": f"bytes {first}-{last}/{size}"}
    return StreamingResponse(
        storage.read(entry["key"], first, last - first + 1), status_code=206, media_type=media_type, headers=headers
    )
