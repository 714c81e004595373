"""The child process behind `pages.PageReaders`: documents in, one at a time, manifests out.

`serve` runs in a process forked by `fork_server`. It connects to the worker's socket, says
its pid, then answers each request line `{"path", "workdir", "limits"}` with one line:
`{"mime", "pages": [{number, text, image}]}` or `{"error": {type, message}}`, with the
memory it holds afterwards (`resident`, bytes), until the worker hangs up.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from pipelines.documents.images import read_image
from pipelines.documents.pages import PageLimits
from pipelines.documents.pdf import read_pdf
from service.errors import JobError, PermanentError
from service.storage.sniffing import PDF, SNIFF_BYTES, sniff_document


def read(path: Path, workdir: Path, limits: PageLimits) -> dict:
    with path.open("rb") as file:
        mime = sniff_document(file.read(SNIFF_BYTES))
    if mime is None:
        raise PermanentError("not a PDF, PNG, JPEG or TIFF document", type="unsupported_document")
    pages = read_pdf(path, workdir, limits) if mime == PDF else read_image(path, workdir, limits)
    return {"mime": mime, "pages": [asdict(page) for page in pages]}


def serve(socket_path: str) -> None:
    """The child's entry point: answer the worker's requests on `socket_path` until it hangs up."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(socket_path)
        with connection.makefile("rwb") as stream:
            _send(stream, {"pid": os.getpid()})
            for line in stream:
                _send(stream, {**answer(json.loads(line)), "resident": _memory()[1]})


def answer(request: dict) -> dict:
    limits = PageLimits(**request["limits"])
    try:
        with _memory_limit(limits.memory_bytes):
            return read(Path(request["path"]), Path(request["workdir"]), limits)
    except JobError as exc:
        return {"error": exc.as_dict()}
    except MemoryError:
        return {"error": {"type": "document_too_complex", "message": "reading the document ran out of memory"}}
    except Exception as exc:  # a parser's own failure: the client learns what it said
        message = f"the document could not be read: {type(exc).__name__}: {exc}"
        return {"error": {"type": "unreadable_document", "message": message[:1000]}}


def _send(stream, message: dict) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def _memory() -> tuple[int, int]:
    """This process's mapped and resident bytes (proc(5): statm)."""
    mapped, resident = Path("/proc/self/statm").read_text().split()[:2]
    return int(mapped) * resource.getpagesize(), int(resident) * resource.getpagesize()


@contextlib.contextmanager
def _memory_limit(budget: int) -> Iterator[None]:
    """Let this one read map `budget` bytes beyond what the reader has mapped already."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped, _ = _memory()
    limit = mapped + budget if hard == resource.RLIM_INFINITY else min(hard, mapped + budget)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
