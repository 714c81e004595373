"""POST /v1/videos: an MP4, MOV, WebM or MKV to turn into streaming renditions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipelines.videos.plan import parse_renditions
from service.api.openapi import upload_operation
from service.api.routes.destinations import check_callback_url
from service.api.submissions import kind_spec, submit_upload
from service.api.validation import invalid
from service.errors import PermanentError
from service.storage.sniffing import VIDEO_TYPES


def video_fields(fields: dict[str, str]) -> dict:
    """`renditions` ("720p,480p"; default 720p and 480p), refused here rather than in the job."""
    try:
        heights = parse_renditions(fields.get("renditions"))
    except PermanentError as exc:
        raise invalid("renditions", exc.message) from None
    return {"renditions": list(heights)}


async def create_video(request: Request) -> Response:
    return await submit_upload(
        request,
        kind=kind_spec(request, "video"),
        accept=VIDEO_TYPES,
        check_callback=check_callback_url,
        parse_fields=video_fields,
    )


OPENAPI_PATHS = {
    "/v1/videos": {
        "post": upload_operation(
            "Submit a video (MP4, MOV, WebM, MKV) to transcode into renditions and a thumbnail",
            {"renditions": {"type": "string", "description": "heights, e.g. 720p,480p (default)"}},
        )
    },
}
