"""An FCM HTTP v1-compatible send endpoint: Bearer auth, message validation, FCM's errors.

FCM itself has no idempotency key, so neither has this server: sending twice delivers twice.
"""

from __future__ import annotations

import itertools
import json
import re

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .fake_provider import FakeProvider

TOKEN = re.compile(r"^[A-Za-z0-9_:\-]{8,4096}$")
MESSAGE_FIELDS = {
    "token",
    "topic",
    "condition",
    "notification",
    "data",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "name",
}


def fcm_error(http_status: int, status: str, message: str, error_code: str | None = None) -> dict:
    error: dict = {"code": http_status, "message": message, "status": status}
    if error_code:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    return {"error": error}


class FcmServer(FakeProvider):
    def __init__(self, project_id: str = "conveyor-test", access_token: str = "ya29.test-access-token") -> None:
        self.project_id = project_id
        self.access_token = access_token
        self.unregistered: set[str] = set()
        self._ids = itertools.count(1)
        super().__init__([Route("/v1/projects/{project}/messages:send", self.send, methods=["POST"])])

    def inject_error(self, http_status: int, status: str, error_code: str, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.inject(http_status, fcm_error(http_status, status, f"injected {error_code}", error_code), headers)

    async def send(self, request: Request) -> JSONResponse:
        def invalid(message: str) -> JSONResponse:
            return JSONResponse(fcm_error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT"), status_code=400)

        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(
                fcm_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                ),
                status_code=401,
            )
        if request.path_params["project"] != self.project_id:
            return JSONResponse(
                fcm_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource"),
                status_code=403,
            )
        if fault := self.take_fault():
            return fault
        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("Invalid JSON payload received.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return invalid("Invalid JSON payload received. 'message' is required.")
        if unknown := set(message) - MESSAGE_FIELDS:
            return invalid(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'message'.")
        if sum(target in message for target in ("token", "topic", "condition")) != 1:
            return invalid("Exactly one of token, topic or condition must be given.")
        token = message.get("token")
        if not isinstance(token, str) or not TOKEN.match(token):
            return invalid("The registration token is not a valid FCM registration token")
        if token in self.unregistered:
            return JSONResponse(
                fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), status_code=404
            )
        notification = message.get("notification", {})
        if not isinstance(notification, dict) or not all(
            isinstance(notification.get(k, ""), str) for k in ("title", "body")
        ):
            return invalid("Invalid value at 'message.notification'")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(value, str) for value in data.values()):
            return invalid("Invalid value at 'message.data': values must be strings")
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}"
        self.messages.append({"name": name, **message})
        return JSONResponse({"name": name})
