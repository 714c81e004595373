"""The paid services a benchmark talks to, each in its own process with realistic latency.

Usage: `python -m bench.servers KIND [options]`; prints the server's URL on its first
stdout line, then serves until killed.

- `s3-proxy --upstream URL --put-latency S --latency S`: moto has no latency knob, so
  this reverse proxy in front of it waits before forwarding each request.
- `textract --s3 URL --seconds S`: the local Textract (real wire protocol), answering
  IN_PROGRESS for S seconds, then two pages of canned lines: real Textract spends its own
  CPUs reading, so the benchmark's machine must not.
- `llm --latency S`: the local OpenAI-compatible server, each answer taking S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.llm_servers import LLMServers
from tests.support.served_app import ServedApp
from tests.support.textract_server import Job, TextractServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
CANNED_PAGES = (
    ["Jane Doe", "jane.doe@example.com | Phone: +49 30 1234 5678", "Summary", "Builds reliable data pipelines."],
    ["Skills: Python, PostgreSQL, Kubernetes", "Experience", "2015 - 2019 ACME Corp"],
)


def s3_proxy(upstream: str, put_latency: float, latency: float) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def forward(request: Request) -> Response:
        await asyncio.sleep(put_latency if request.method == "PUT" else latency)
        headers = {name: value for name, value in request.headers.items() if name not in HOP_BY_HOP}
        answer = await client.request(
            request.method, request.url.path, params=request.query_params.multi_items(),
            headers=headers, content=await request.body(),
        )
        headers = {name: value for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP}
        response = Response(answer.content, status_code=answer.status_code, headers=headers)
        if request.method == "HEAD" and "content-length" in answer.headers:
            response.headers["content-length"] = answer.headers["content-length"]
        return response

    methods = ["GET", "PUT", "POST", "DELETE", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


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
    parser.add_argument("kind", choices=["s3-proxy", "textract", "llm"])
    parser.add_argument("--upstream")
    parser.add_argument("--s3")
    parser.add_argument("--put-latency", type=float, default=0.05)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "s3-proxy":
        server: Any = ServedApp(s3_proxy(args.upstream, args.put_latency, args.latency))
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
