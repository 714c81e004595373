"""The API benchmark's load generators, both C programs from Debian, so that generating the
load costs the shared 2 cores little and the numbers describe the server, not the client.

`run(mode, url, key, clients=, seconds=, …)` runs wrk (driven by the Lua scripts in
`bench/wrk/`) once and returns its `Load`: uploads of one multipart body to POST
/v1/documents, or polls of GET /v1/jobs/{id} for ids picked at random from a file. wrk is
a closed loop: each connection sends its next request as soon as the last is answered, so
it finds the peak rate, and its latency is whatever queueing that peak implies (with 50
connections, Little's law makes the mean 50 / rate).

`paced_uploads(url, key, clients=, rate=, seconds=, …)` offers uploads at a fixed rate
instead (h2load, from nghttp2-client): each connection sends `rate / clients` a second and
the connections start `1 / rate` apart (in whole milliseconds: h2load's resolution), so
requests arrive evenly spaced rather than in bursts of `clients`. Its latency is what a client sees while the API carries that rate.
`h2load(…)` is that load generator for any POST, paced or a closed loop of a fixed number
of requests, answering with each request's times (the jobs benchmark posts jobs with it).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .report import percentile

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
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="bench.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    return head + PDF_HEAD + b"%" * (size - len(PDF_HEAD)) + f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass(frozen=True, slots=True)
class Answer:
    """One request as h2load logged it."""

    #: When it was sent, seconds since the epoch.
    sent_at: float
    status: int
    #: From sending it to the end of its response.
    seconds: float

    @property
    def ended_at(self) -> float:
        return self.sent_at + self.seconds


async def h2load(
    url: str, key: str, body: bytes, content_type: str, *, clients: int, requests: int, rate: float | None = None
) -> list[Answer]:
    """`requests` POSTs of `body` to `url` from `clients` connections: a closed loop (each
    connection sends its next request when the last is answered), or, with `rate`, offered at
    `rate` a second, evenly spaced."""
    clients = min(clients, requests)
    pacing = []
    if rate is not None:
        pacing = [f"--rps={rate / clients:g}", "--rate=1", f"--rate-period={max(1, round(1000 / rate))}ms"]
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-load-") as scratch:
        posted, log = Path(scratch) / "body", Path(scratch) / "requests.tsv"
        posted.write_bytes(body)
        process = await asyncio.create_subprocess_exec(
            "h2load",
            "--h1",
            f"--clients={clients}",
            f"--requests={requests}",
            *pacing,
            f"--data={posted}",
            f"--log-file={log}",
            f"--header=Content-Type: {content_type}",
            f"--header=Authorization: Bearer {key}",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0 or not log.exists():
            raise RuntimeError(f"h2load failed ({process.returncode}): {output.decode()[-2000:]}")
        # One row a request: start (µs since the epoch), HTTP status, µs until the end of the response.
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    return [Answer(int(start) / 1e6, int(status), int(micros) / 1e6) for start, status, micros, *_ in rows]


def accepted_load(answers: list[Answer], sent: int, seconds: float) -> Load:
    """The `202`s among `answers` (of `sent` requests), over the first request's start to the
    last answer's end (`seconds` if none was answered)."""
    latencies = [answer.seconds for answer in answers if answer.status == 202]
    span = seconds
    if answers:
        span = max(answer.ended_at for answer in answers) - min(answer.sent_at for answer in answers)
    p50, p99 = (percentile(latencies, 50), percentile(latencies, 99)) if latencies else (math.nan, math.nan)
    return Load(requests=sent, accepted=len(latencies), seconds=max(span, 1e-9), p50=p50, p99=p99)


async def paced_uploads(url: str, key: str, *, clients: int, rate: float, seconds: float, size: int = 100_000) -> Load:
    """Uploads offered at `rate` a second, evenly spaced, from `clients` connections."""
    sent = math.ceil(rate * seconds)
    answers = await h2load(
        f"{url}/v1/documents",
        key,
        multipart_document(size),
        f"multipart/form-data; boundary={BOUNDARY}",
        clients=clients,
        requests=sent,
        rate=rate,
    )
    return accepted_load(answers, sent, seconds)


async def run(
    mode: str, url: str, key: str, *, clients: int, seconds: float, size: int = 100_000, ids: list[str] | None = None
) -> Load:
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
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, math.ceil(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(SCRIPTS / f"{mode}.lua"),
            target,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        output, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {errors.decode()[-2000:]}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    return Load(
        requests=result["requests"],
        accepted=result["requests"] - result["failed"],
        seconds=result["seconds"],
        p50=result["p50"],
        p99=result["p99"],
    )
