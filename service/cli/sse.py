"""A small Server-Sent Events reader: the lines of an event stream in, its events out.

It follows the parsing rules of the HTML standard that the CLI meets in practice:
`field: value` lines, data lines joined by newlines, comments (`:` lines, the server's
pings) skipped, an event dispatched at each blank line, and none if it had no data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None


def parse(lines: Iterable[str]) -> Iterator[Event]:
    name, last_id = "", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data), last_id)
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
