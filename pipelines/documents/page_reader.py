"""The child process behind `pages.read_pages`: one document in, a JSON manifest out.

Usage: `python -m pipelines.documents.page_reader '{"path": …, "workdir": …, "limits": {…}}'`.
Prints `{"mime", "pages": [{number, text, image}]}` or `{"error": {type, message}}`.
"""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import asdict
from pathlib import Path

from pipelines.documents.pages import PageLimits
from service.sniffing import PDF, SNIFF_BYTES, sniff_document
from pipelines.errors import JobError, PermanentError


def read(path: Path, workdir: Path, limits: PageLimits) -> dict:
    with path.open("rb") as file:
        mime = sniff_document(file.read(SNIFF_BYTES))
    if mime is None:
        raise PermanentError("not a PDF, PNG, JPEG or TIFF document", type="unsupported_document")
    if mime == PDF:
        from pipelines.documents.pdf import read_pdf

        pages = read_pdf(path, workdir, limits)
    else:
        from pipelines.documents.images import read_image

        pages = read_image(path, workdir, limits)
    return {"mime": mime, "pages": [asdict(page) for page in pages]}


def main(argv: list[str]) -> None:
    request = json.loads(argv[1])
    limits = PageLimits(**request["limits"])
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    memory = limits.memory_bytes if hard == resource.RLIM_INFINITY else min(hard, limits.memory_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (memory, hard))
    try:
        reply = read(Path(request["path"]), Path(request["workdir"]), limits)
    except JobError as exc:
        reply = {"error": exc.as_dict()}
    except MemoryError:
        reply = {"error": {"type": "document_too_complex", "message": "reading the document ran out of memory"}}
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
