"""The child process behind `pages.PageReaders`: one document in, a JSON manifest out.

`serve` runs in a process forked for one document by `fork_server`; it writes
`{"mime", "pages": [{number, text, image}]}` or `{"error": {type, message}}`.
"""

from __future__ import annotations

import json
import resource
from dataclasses import asdict
from pathlib import Path

from pipelines.documents.images import read_image
from pipelines.documents.pages import PageLimits
from pipelines.documents.pdf import read_pdf
from service.sniffing import PDF, SNIFF_BYTES, sniff_document
from pipelines.errors import JobError, PermanentError


def read(path: Path, workdir: Path, limits: PageLimits) -> dict:
    with path.open("rb") as file:
        mime = sniff_document(file.read(SNIFF_BYTES))
    if mime is None:
        raise PermanentError("not a PDF, PNG, JPEG or TIFF document", type="unsupported_document")
    pages = read_pdf(path, workdir, limits) if mime == PDF else read_image(path, workdir, limits)
    return {"mime": mime, "pages": [asdict(page) for page in pages]}


def serve(request: dict, reply_path: str) -> None:
    """The child's entry point: read one document, write the reply as JSON to `reply_path`."""
    limits = PageLimits(**request["limits"])
    _limit_memory(limits.memory_bytes)
    try:
        reply = read(Path(request["path"]), Path(request["workdir"]), limits)
    except JobError as exc:
        reply = {"error": exc.as_dict()}
    except MemoryError:
        reply = {"error": {"type": "document_too_complex", "message": "reading the document ran out of memory"}}
    except Exception as exc:  # a parser's own failure: the client learns what it said
        message = f"the document could not be read: {type(exc).__name__}: {exc}"
        reply = {"error": {"type": "unreadable_document", "message": message[:1000]}}
    Path(reply_path).write_text(json.dumps(reply))


def _limit_memory(budget: int) -> None:
    """Let the reader map `budget` bytes beyond what it inherited from the fork server."""
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + budget if hard == resource.RLIM_INFINITY else min(hard, mapped + budget)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
