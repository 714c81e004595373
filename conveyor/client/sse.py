"""A Server-Sent Events reader fed one line at a time, so the sync and the async client
share it: each event comes out at the blank line that ends it.

It follows the HTML standard's parsing rules that a job's stream uses: `field: value`
lines, data lines joined by newlines, comments (`:` lines, the server's pings) skipped,
an event dispatched at each blank line, and none if it had no data; the last `id` carries
over to later events (it is what a reconnect sends as `Last-Event-ID`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawEvent:
    event: str
    data: str
    id: str | None


class EventParser:
    def __init__(self, last_id: str | None = None) -> None:
        self.name = ""
        self.data: list[str] = []
        self.last_id = last_id  # a reconnected stream's parser starts from the last one's

    def feed(self, line: str) -> RawEvent | None:
        """The event this line completes, if it does."""
        if not line:
            event = RawEvent(self.name or "message", "\n".join(self.data), self.last_id) if self.data else None
            self.name, self.data = "", []
            return event
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self.data.append(value)
        elif field == "event":
            self.name = value
        elif field == "id" and "\0" not in value:
            self.last_id = value
        return None
