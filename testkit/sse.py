"""A small Server-Sent Events reader over httpx, for tests: events and comments in order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx


@dataclass
class Stream:
    status: int
    events: list[dict] = field(default_factory=list)  # {"id", "event", "data"}
    comments: list[str] = field(default_factory=list)
    ended: bool = False  # the server closed the stream


async def read_stream(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: dict | None = None,
    max_events: int | None = None,
    min_comments: int = 0,
) -> Stream:
    """Read until the server ends the stream, or `max_events` events and `min_comments`
    comments have arrived (then hang up)."""
    async with http.stream("GET", url, headers=headers) as response:
        stream = Stream(response.status_code)
        if response.status_code != 200:
            await response.aread()
            stream.events.append({"problem": response.json()})
            return stream
        event: dict = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                stream.comments.append(line[1:].strip())
            elif line == "":
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                    stream.events.append(event)
                event = {}
            else:
                name, _, value = line.partition(":")
                event[name] = value[1:] if value.startswith(" ") else value
            if max_events is not None and len(stream.events) >= max_events and len(stream.comments) >= min_comments:
                return stream
        stream.ended = True
        return stream
