"""A Twilio-compatible Messages API: basic auth, form bodies, Twilio's error JSON, idempotency."""

from __future__ import annotations

import base64
import re
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .fake_provider import FakeProvider

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def twilio_error(status: int, code: int, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioServer(FakeProvider):
    def __init__(
        self,
        account_sid: str = "AC" + "0" * 31 + "1",
        auth_token: str = "twilio-test-token",
        numbers: tuple[str, ...] = ("+15005550006",),
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = set(numbers)
        super().__init__([Route("/2010-04-01/Accounts/{sid}/Messages.json", self.create_message, methods=["POST"])])

    def _authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return (user, password) == (self.account_sid, self.auth_token)

    async def create_message(self, request: Request) -> JSONResponse:
        def error(status: int, code: int, message: str) -> JSONResponse:
            return JSONResponse(twilio_error(status, code, message), status_code=status)

        if not self._authenticated(request):
            return error(401, 20003, "Authenticate")
        if request.path_params["sid"] != self.account_sid:
            return error(404, 20404, "The requested resource was not found")
        if fault := self.take_fault():
            return fault
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return error(400, 20001, "Form body expected")
        form = await request.form()
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not E164.match(to):
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender not in self.numbers:
            return error(
                400,
                21606,
                f"The 'From' phone number provided ({sender}) is not a valid message-capable Twilio phone number for this destination.",
            )
        if not body:
            return error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        sid = "SM" + uuid.uuid4().hex
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "num_segments": str(len(body) // 153 + 1),
            "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        key = request.headers.get("i-twilio-idempotency-token")
        return self.replay_or_record(key, message, JSONResponse(message, status_code=201))
