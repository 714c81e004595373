"""Read-your-writes: where the last write a reader must see ended in the WAL (an LSN).

After a unit of work that names what it touched (`track=("job:…",)`) commits, its LSN
is kept in Redis under each name for `read_your_writes_ttl`, so every API process and
worker knows it; a read that follows those names goes only to a replica that has
replayed that far (GitLab's load balancer works the same way).

The LSN is also handed to the client as a consistency token, in PostgreSQL's own text
form (`16/B374D848`): a response to a request that wrote carries
`Conveyor-Consistency: <lsn>`, and the client may send it back on later reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from redis.asyncio import Redis

HEADER = "Conveyor-Consistency"
KEY_PREFIX = "conveyor:lsn:"
LSN_TEXT = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

# Values are fixed-width hex, so Lua compares them as strings: Lua numbers are doubles
# and would round LSNs past 2^53. The key keeps the larger LSN and a fresh expiry.
RAISE_TO = """
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not current or current < ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
"""


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    match = LSN_TEXT.match(text.strip())
    if match is None:
        raise ValueError(f"not an LSN: {text[:40]!r}")
    return int(match[1], 16) << 32 | int(match[2], 16)


class WritePositions:
    """The last write LSN of each tracked name, shared by all processes through Redis."""

    def __init__(self, redis: Redis, ttl: float) -> None:
        self.redis = redis
        self.ttl_ms = max(int(ttl * 1000), 1)
        self._raise_to = redis.register_script(RAISE_TO)

    async def remember(self, names: Sequence[str], lsn: int) -> None:
        await self._raise_to(keys=[KEY_PREFIX + name for name in names], args=[f"{lsn:016x}", self.ttl_ms])

    async def required(self, names: Sequence[str]) -> int:
        """The LSN a reader of these names must see (0: none written lately)."""
        values = await self.redis.mget([KEY_PREFIX + name for name in names])
        return max((int(value, 16) for value in values if value), default=0)


_request_writes: ContextVar[list[int] | None] = ContextVar("conveyor_request_writes", default=None)


def note_write(lsn: int) -> None:
    """Record that the current request wrote up to `lsn` (no-op outside a request)."""
    writes = _request_writes.get()
    if writes is not None:
        writes.append(lsn)


@contextmanager
def writes_recorded() -> Iterator[list[int]]:
    """The LSNs `note_write` records within this block (one request, in the HTTP layer)."""
    writes: list[int] = []
    token = _request_writes.set(writes)
    try:
        yield writes
    finally:
        _request_writes.reset(token)
