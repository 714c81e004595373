"""Bounded request heads: at most `MAX_HEAD_BYTES` and `MAX_HEADERS` header fields.

uvicorn's httptools protocol buffers a header of any size, and httptools grows it by
concatenation, so one 256 MiB header costs minutes of CPU before the app sees a byte.
`BoundedHttpProtocol` counts the bytes of a head while it is read and answers 431
(problem+json) once past the bound, without parsing further; run the API with it:

    uvicorn service.app:app --http service.api.request_heads:BoundedHttpProtocol

(`conveyor up` does). `HeadLimitMiddleware` checks the same bounds on what reaches the
app, for servers started without that protocol (whose own limits then decide the cost).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.api.problems import PROBLEM_TYPE_BASE, Problem, problem_response

MAX_HEAD_BYTES = 64 * 1024  # the request line and all header fields
MAX_HEADERS = 100
TOO_LARGE = 431


def _refusal(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why these header fields are refused, or None."""
    if len(headers) > MAX_HEADERS:
        return f"more than {MAX_HEADERS} header fields"
    if sum(len(name) + len(value) for name, value in headers) > MAX_HEAD_BYTES:
        return f"header fields larger than {MAX_HEAD_BYTES} bytes in all"
    return None


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head bounded.

    A chunk read while a head is incomplete, in which no head began or ended, is all head
    bytes; the head is refused once those pass `MAX_HEAD_BYTES`. Chunks in which a head
    began or ended are not counted (their share of the head is unknown), so a head may
    reach that bound plus two reads (at most 256 KiB each) before it is refused: a bounded,
    cheap amount, with no false refusal of pipelined requests.
    """

    _in_head = False
    _boundary = False
    _head_bytes = 0
    _header_count = 0
    _refusal: str | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._boundary = True
        self._head_bytes = self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refusal = f"more than {MAX_HEADERS} header fields"
            raise ValueError(self._refusal)  # stops the parser: uvicorn answers through send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._boundary = True
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        self._boundary = False
        super().data_received(data)
        if not self._in_head or self._refusal or self.transport.is_closing():
            return
        self._head_bytes = 0 if self._boundary else self._head_bytes + len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refusal = f"the request head is larger than {MAX_HEAD_BYTES} bytes"
            self.send_400_response(self._refusal)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self.logger.warning("Request head refused: %s.", self._refusal)
        body = json.dumps(
            {
                "type": PROBLEM_TYPE_BASE + "request-header-too-large",
                "status": TOO_LARGE,
                "title": "Request Header Fields Too Large",
                "detail": self._refusal,
            }
        ).encode()
        head = [STATUS_LINE[TOO_LARGE]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class HeadLimitMiddleware:
    """431 for a request whose header fields pass the bounds, before anything reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refusal := _refusal(scope["headers"])):
            problem = Problem(TOO_LARGE, refusal, type="request-header-too-large", headers={"Connection": "close"})
            await problem_response(Request(scope), problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)
