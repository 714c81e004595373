"""The paid services a benchmark talks to, each in its own process with realistic latency.

Usage: `python -m bench.servers KIND [options]`; prints the server's URL on its first
stdout line, then serves until killed.

- `s3 --put-latency S --latency S`: moto's S3, each request waiting before moto answers
  it (moto has no latency knob). The wait is in moto's own request thread, not in a proxy
  in front of it: a proxy's CPU would be taken from the machine the benchmark measures.
  Served by waitress, not werkzeug's development server (what `python -m moto.server`
  runs), because that one closes the connection after every answer: each request would pay
  a TCP connect on both sides, which real S3's keep-alive never costs. moto's S3 app is
  served alone, not behind moto's dispatcher (which works out from each request which of its
  services it is for) and out of Flask's debug mode: 2.9 → 1.7 ms of CPU a request, the
  benchmark's machine doing less of what AWS's machines do.
- `notices --put-latency 0`: moto's SNS and SQS (one process: SNS delivers to SQS inside
  moto), for Textract's completion notices.
- `textract --s3 URL --seconds S [--sns URL]`: the local Textract (real wire protocol),
  answering IN_PROGRESS for S seconds, then two pages of canned lines: real Textract spends
  its own CPUs fetching the object from S3 and reading it, so the benchmark's machine must
  not. A job started with a notification channel publishes its notice to the SNS at URL.
- `llm --latency S`: the local OpenAI-compatible server, each answer taking S seconds.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import waitress
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import SQSBackend

from testkit.llm_servers import LLMServers
from testkit.textract_server import Job, TextractServer

REQUESTS_AT_ONCE = 128
CANNED_PAGES = (
    ["Jane Doe", "jane.doe@example.com | Phone: +49 30 1234 5678", "Summary", "Builds reliable data pipelines."],
    ["Skills: Python, PostgreSQL, Kubernetes", "Experience", "2015 - 2019 ACME Corp"],
)


class SlowMoto:
    """moto with latency, on a threaded server that keeps connections alive: one service's
    application, or (`service` None) all of them behind moto's dispatcher."""

    def __init__(self, service: str | None, put_latency: float, latency: float) -> None:
        if service:
            app = create_backend_app(service)
            app.debug = False
        else:
            app = DomainDispatcherApplication(create_backend_app)

        def delayed(environ: dict, start_response: Any):
            time.sleep(put_latency if environ["REQUEST_METHOD"] == "PUT" else latency)
            return app(environ, start_response)

        # A thread per request in flight: each one sleeps through its latency.
        self.server = waitress.create_server(
            delayed, host="127.0.0.1", port=0, threads=REQUESTS_AT_ONCE, connection_limit=REQUESTS_AT_ONCE * 2
        )
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()


def cheaper_sqs_receives() -> None:
    """moto checks each message it hands out against the queue's retention period by building
    every attribute of the queue (~1 ms); read the one attribute instead."""

    def retained(self: SQSBackend, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > time.time()

    SQSBackend.is_message_valid_based_on_retention_period = retained


class CannedTextract(TextractServer):
    def _fetch(self, bucket: str, key: str) -> bytes:
        return b"%PDF-1.7\n"

    async def _process(self, job: Job, data: bytes) -> None:
        blocks: list[dict[str, Any]] = []
        for number, lines in enumerate(CANNED_PAGES, start=1):
            blocks.append({"BlockType": "PAGE", "Id": f"page-{number}", "Page": number})
            blocks += [
                {"BlockType": "LINE", "Id": f"line-{number}-{n}", "Page": number, "Text": text, "Confidence": 99.0}
                for n, text in enumerate(lines)
            ]
        job.pages, job.blocks, job.status, job.done = len(CANNED_PAGES), blocks, "SUCCEEDED", True


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.servers")
    parser.add_argument("kind", choices=["s3", "notices", "textract", "llm"])
    parser.add_argument("--s3")
    parser.add_argument("--sns")
    parser.add_argument("--put-latency", type=float, default=0.05)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "notices":
        cheaper_sqs_receives()
    if args.kind in ("s3", "notices"):
        server: Any = SlowMoto("s3" if args.kind == "s3" else None, args.put_latency, args.latency)
        url = server.url
    elif args.kind == "textract":
        server = CannedTextract(args.s3, in_progress_seconds=args.seconds, sns_endpoint_url=args.sns)
        url = server.url
    else:
        server = LLMServers(latency=args.latency)
        url = server.openai_base_url
    server.start()
    print(url, flush=True)
    (server.served if hasattr(server, "served") else server).thread.join()


if __name__ == "__main__":
    main(sys.argv[1:])
