"""A OneSignal-compatible create-notification endpoint: `Key`/`Basic` auth, targeting by
subscription id or external_id alias, `idempotency_key` (a UUID) honoured."""

from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .fake_provider import FakeProvider


def errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": list(messages)}, status_code=status)


class OneSignalServer(FakeProvider):
    def __init__(
        self, app_id: str = "5eb5a37e-b458-11e3-ac11-000c2940e62c", api_key: str = "os_v2_app_test_key"
    ) -> None:
        self.app_id = app_id
        self.api_key = api_key
        self.subscriptions: set[str] = set()
        self.external_ids: set[str] = set()
        super().__init__([Route("/notifications", self.create, methods=["POST"])])

    async def create(self, request: Request) -> JSONResponse:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme not in ("Key", "Basic") or key != self.api_key:
            return errors(
                403, "Access denied.  Please include an 'Authorization: Key' header with a valid REST API key."
            )
        if fault := self.take_fault():
            return fault
        try:
            body = json.loads(await request.body())
        except ValueError:
            return errors(400, "Invalid JSON")
        if not isinstance(body, dict) or body.get("app_id") != self.app_id:
            return errors(400, "app_id not found. You may be missing a Content-Type: application/json header.")
        contents = body.get("contents")
        if not isinstance(contents, dict) or not isinstance(contents.get("en"), str):
            return errors(400, "Notification contents must include English ('en') content")
        key = body.get("idempotency_key")
        if key is not None:
            try:
                uuid.UUID(str(key))
            except ValueError:
                return errors(400, "idempotency_key must be a valid UUID")
        if "include_subscription_ids" in body:
            targets, known = body["include_subscription_ids"], self.subscriptions
        elif "include_aliases" in body:
            if body.get("target_channel") not in ("push", "email", "sms"):
                return errors(400, "target_channel is required with include_aliases")
            targets, known = body["include_aliases"].get("external_id", []), self.external_ids
        else:
            return errors(
                400, "You must include which players, segments, or tags you wish to send this notification to."
            )
        if not isinstance(targets, list) or not targets:
            return errors(400, "Recipients must be a non-empty list")
        reached = [target for target in targets if target in known]
        if not reached:
            return JSONResponse({"id": "", "errors": ["All included players are not subscribed"]})
        notification_id = str(uuid.uuid4())
        reply = {"id": notification_id, "external_id": None}
        if len(reached) < len(targets):
            reply["errors"] = {
                "invalid_aliases" if known is self.external_ids else "invalid_player_ids": [
                    t for t in targets if t not in known
                ]
            }
        return self.replay_or_record(key, {"id": notification_id, **body}, JSONResponse(reply))
