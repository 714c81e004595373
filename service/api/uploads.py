"""Streaming multipart uploads: the file goes to storage as it arrives, never whole in memory.

The body is parsed incrementally (python-multipart); the file part is sniffed from its
first bytes (415 if it is not an accepted type; judged again once its size is known),
hashed, and written through a storage writer; the request is cut off with 413 as soon as
it passes the limit. Small text fields are kept (bounded). Anything malformed is a 400,
and a failed upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.api.problems import Problem
from service.storage import ObjectWriter, Storage
from service.storage.sniffing import SNIFF_BYTES, sniff

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
MULTIPART_OVERHEAD = 64 * 1024
NO_FILE = "send the file in a part named 'file'"


@dataclass
class Upload:
    key: str
    size: int
    sha256: str
    content_type: str
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)

    def fingerprint(self, route: str) -> str:
        """Same route, fields and file content → same fingerprint, whatever the boundary."""
        canonical = json.dumps([route, sorted(self.fields.items()), self.sha256])
        return hashlib.sha256(canonical.encode()).hexdigest()


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the upload exceeds the limit of {limit} bytes", type="payload-too-large", limit=limit)


def clean_filename(raw: bytes | None) -> str | None:
    """The client's file name, for display only: no paths, no control characters, bounded."""
    if not raw:
        return None
    name = raw.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or None


class _Parts:
    """Collects python-multipart's synchronous callbacks as a list of events to replay."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    def callbacks(self) -> MultipartCallbacks:
        def data(name: str) -> Callable[[bytes, int, int], None]:
            return lambda buf, start, end: self.events.append((name, bytes(buf[start:end])))

        def mark(name: str) -> Callable[[], None]:
            return lambda: self.events.append((name, b""))

        return {
            "on_part_begin": mark("begin"),
            "on_part_data": data("data"),
            "on_part_end": mark("end"),
            "on_header_field": data("header_field"),
            "on_header_value": data("header_value"),
            "on_header_end": mark("header_end"),
            "on_headers_finished": mark("headers_finished"),
        }


async def receive_upload(request: Request, storage: Storage, *, key: str, limit: int, accept: frozenset[str]) -> Upload:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise Problem(415, "send the file as multipart/form-data", type="unsupported-media-type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)

    parts = _Parts()
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    state = _State(storage, key, limit, accept)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + MULTIPART_OVERHEAD:
                raise _too_large(limit)
            parser.write(chunk)
            await state.replay(parts.events)
            parts.events.clear()
        parser.finalize()
        await state.replay(parts.events)
        return await state.finish()
    except MultipartParseError as exc:
        await state.abort()
        raise Problem(400, f"malformed multipart body: {exc}", type="bad-request") from None
    except ClientDisconnect:
        await state.abort()
        raise Problem(400, "the client disconnected before the upload finished", type="bad-request") from None
    except BaseException:
        await state.abort()
        raise


class _State:
    def __init__(self, storage: Storage, key: str, limit: int, accept: frozenset[str]) -> None:
        self.storage, self.key, self.limit, self.accept = storage, key, limit, accept
        self.fields: dict[str, str] = {}
        self.headers: dict[bytes, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.part_name: str | None = None
        self.part_filename: str | None = None
        self.is_file = False
        self.value = bytearray()
        self.head = bytearray()
        self.writer: ObjectWriter | None = None
        self.upload: Upload | None = None
        self.digest = hashlib.sha256()
        self.size = 0
        self.content_type: str | None = None

    async def replay(self, events: list[tuple[str, bytes]]) -> None:
        for name, data in events:
            if name == "begin":
                self.headers, self.value, self.header_field, self.header_value = {}, bytearray(), b"", b""
                self.part_name = None
            elif name == "header_field":
                self.header_field += data
            elif name == "header_value":
                self.header_value += data
            elif name == "header_end":
                self.headers[self.header_field.lower()] = self.header_value
                self.header_field, self.header_value = b"", b""
            elif name == "headers_finished":
                self._start_part()
            elif name == "data":
                await (self._file_data(data) if self.is_file else self._field_data(data))
            elif name == "end":
                await (self._end_file() if self.is_file else self._end_field())

    def _start_part(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise Problem(400, "a multipart part has no name", type="bad-request")
        self.part_name = name.decode("utf-8", "replace")
        self.is_file = self.part_name == "file"
        self.part_filename = clean_filename(options.get(b"filename"))
        if not self.is_file and b"filename" in options:  # a file, whatever its size: say where it goes
            raise Problem(400, f"the file came in a part named {self.part_name!r}: {NO_FILE}", type="bad-request")
        if self.is_file and (self.upload is not None or self.writer is not None):
            raise Problem(400, "send exactly one part named 'file'", type="bad-request")

    async def _field_data(self, data: bytes) -> None:
        self.value += data
        if len(self.value) > MAX_FIELD_BYTES:
            raise Problem(
                413,
                f"field {self.part_name!r} is larger than {MAX_FIELD_BYTES} bytes "
                f"(if it is the file, send it in a part named 'file')",
                type="payload-too-large",
            )

    async def _end_field(self) -> None:
        if len(self.fields) >= MAX_FIELDS:
            raise Problem(400, f"more than {MAX_FIELDS} form fields", type="bad-request")
        assert self.part_name is not None  # named by its headers, before its data
        try:
            self.fields[self.part_name] = self.value.decode("utf-8")
        except UnicodeDecodeError:
            raise Problem(400, f"field {self.part_name!r} is not UTF-8", type="bad-request") from None

    async def _file_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _too_large(self.limit)
        self.digest.update(data)
        if self.writer is not None:
            await self.writer.write(data)
            return
        self.head += data
        if len(self.head) >= SNIFF_BYTES:
            await self._open_writer()

    async def _open_writer(self, size: int | None = None) -> None:
        """Judge the first bytes, then store them; only `SNIFF_BYTES` of them are kept."""
        self.content_type = self._judge(size)
        self.writer = self.storage.writer(self.key, self.content_type)
        await self.writer.write(bytes(self.head))
        del self.head[SNIFF_BYTES:]

    def _judge(self, size: int | None) -> str:
        """The accepted type the head shows (its boxes checked against `size` once known), or 415."""
        content_type = sniff(bytes(self.head), size)
        if content_type not in self.accept:
            raise Problem(
                415,
                "the file's content is not an accepted type (" + ", ".join(sorted(self.accept)) + ")",
                type="unsupported-media-type",
                accepted=sorted(self.accept),
            )
        return content_type

    async def _end_file(self) -> None:
        if self.size == 0:
            raise Problem(400, "the file is empty", type="empty-file")
        if self.writer is None:
            await self._open_writer(self.size)
        else:
            self._judge(self.size)  # again, now that a box claiming more than the file holds shows
        assert self.writer is not None and self.content_type is not None  # both set by _open_writer
        await self.writer.commit()
        self.upload = Upload(self.key, self.size, self.digest.hexdigest(), self.content_type, self.part_filename)
        self.writer = None

    async def finish(self) -> Upload:
        if self.upload is None:
            raise Problem(400, f"no file: {NO_FILE}", type="bad-request")
        self.upload.fields = self.fields
        return self.upload

    async def abort(self) -> None:
        if self.writer is not None:
            await self.writer.abort()
            self.writer = None
        if self.upload is not None:
            await self.storage.delete(self.key)
