"""The paid services a benchmark talks to, each in its own process with realistic latency.

Usage: `python -m bench.servers KIND [options]`; prints the server's URL on its first
stdout line, then serves until killed.

- `s3 --put-latency S --latency S`: moto's S3, each request waiting before moto answers
  it (moto has no latency knob). The wait is in moto's own request thread, not in a proxy
  in front of it: a proxy's CPU would be taken from the machine the benchmark measures.
- `textract --s3 URL --seconds S`: the local Textract (real wire protocol), answering
  IN_PROGRESS for S seconds, then two pages of canned lines: real Textract spends its own
  CPUs reading, so the benchmark's machine must not.
- `llm --latency S`: the local OpenAI-compatible server, each answer taking S seconds.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from tests.support.llm_servers import LLMServers
from tests.support.textract_server import Job, TextractServer

CANNED_PAGES = (
    ["Jane Doe", "jane.doe@example.com | Phone: +49 30 1234 5678", "Summary", "Builds reliable data pipelines."],
    ["Skills: Python, PostgreSQL, Kubernetes", "Experience", "2015 - 2019 ACME Corp"],
)


class SlowS3:
    """moto's S3 server (threaded, as `python -m moto.server` runs it) with latency."""

    def __init__(self, put_latency: float, latency: float) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def delayed(environ: dict, start_response: Any):
            time.sleep(put_latency if environ["REQUEST_METHOD"] == "PUT" else latency)
            return app(environ, start_response)

        self.server = make_server("127.0.0.1", 0, delayed, threaded=True, request_handler=MotoRequestHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()


class CannedTextract(TextractServer):
    async def _process(self, job: Job, data: bytes) -> None:
        blocks: list[dict[str, Any]] = []
        for number, lines in enumerate(CANNED_PAGES, start=1):
            blocks.append({"BlockType": "PAGE", "Id": f"page-{number}", "Page": number})
            blocks += [{"BlockType": "LINE", "Id": f"line-{number}-{n}", "Page": number, "Text": text,
                        "Confidence": 99.0} for n, text in enumerate(lines)]
        job.pages, job.blocks, job.status, job.done = len(CANNED_PAGES), blocks, "SUCCEEDED", True


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.servers")
    parser.add_argument("kind", choices=["s3", "textract", "llm"])
    parser.add_argument("--s3")
    parser.add_argument("--put-latency", type=float, default=0.05)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "s3":
        server: Any = SlowS3(args.put_latency, args.latency)
        url = server.url
    elif args.kind == "textract":
        server = CannedTextract(args.s3, in_progress_seconds=args.seconds)
        url = server.url
    else:
        server = LLMServers(latency=args.latency)
        url = server.openai_base_url
    server.start()
    print(url, flush=True)
    (server.served if hasattr(server, "served") else server).thread.join()


if __name__ == "__main__":
    main(sys.argv[1:])
