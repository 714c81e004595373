"""The API benchmark's load generator: wrk (C, from Debian), driven by the Lua scripts in
`bench/wrk/`, so that generating the load costs the shared 2 cores little and the numbers
describe the server rather than the client.

`run(mode, url, key, clients=, seconds=, …)` runs wrk once and returns its `Load`:
uploads of one multipart body to POST /v1/documents, or polls of GET /v1/jobs/{id} for
ids picked at random from a file.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).parent / "wrk"
BOUNDARY = "conveyor-bench-boundary"
#: A valid-looking PDF header: the API judges uploads from their bytes.
PDF_HEAD = b"%PDF-1.4\n"


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    accepted: int
    seconds: float
    p50: float
    p99: float

    @property
    def per_second(self) -> float:
        return self.accepted / self.seconds


def multipart_document(size: int) -> bytes:
    """One form with a `size`-byte PDF as its `file` field."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode()
    return head + PDF_HEAD + b"%" * (size - len(PDF_HEAD)) + f"\r\n--{BOUNDARY}--\r\n".encode()


async def run(mode: str, url: str, key: str, *, clients: int, seconds: float, size: int = 100_000,
              ids: list[str] | None = None) -> Load:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-load-") as scratch:
        env = {**os.environ, "WRK_SCRIPTS": str(SCRIPTS), "KEY": key}
        if mode == "upload":
            body = Path(scratch) / "body"
            body.write_bytes(multipart_document(size))
            env.update(BODY_FILE=str(body), BOUNDARY=BOUNDARY)
            target = f"{url}/v1/documents"
        else:
            listed = Path(scratch) / "ids"
            listed.write_text("\n".join(ids or []))
            env["IDS_FILE"] = str(listed)
            target = url
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{clients}", f"-d{max(1, math.ceil(seconds))}s", "--timeout", "30s",
            "-s", str(SCRIPTS / f"{mode}.lua"), target,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        output, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {errors.decode()[-2000:]}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    return Load(requests=result["requests"], accepted=result["requests"] - result["failed"],
                seconds=result["seconds"], p50=result["p50"], p99=result["p99"])
