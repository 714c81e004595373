"""Redis connections that let a cancellation through.

redis-py writes every command under `asyncio.wait_for`. On Python 3.11, `wait_for` swallows
a cancellation that arrives in the same turn its write finishes (it returns the result
instead, gh-86296, fixed in 3.12), and a write finishes at once almost always. The task
then goes on as though it had never been cancelled: arq's main loop, told to stop by a
signal, polls forever and the worker never exits. These connections notice a swallowed
cancellation after the write, drop the connection (its reply is never read) and raise it.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from redis.asyncio.connection import AbstractConnection


def _cancel_requests() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


class CancelSafe:
    """Mixed in before a redis-py connection class."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        before = _cancel_requests()
        await super().send_packed_command(command, check_health)  # type: ignore[misc]
        if _cancel_requests() > before:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise asyncio.CancelledError


@cache
def cancel_safe(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` with `CancelSafe` mixed in (TCP, TLS or a Unix socket, as the URL chose)."""
    if issubclass(connection_class, CancelSafe):
        return connection_class
    return type(f"CancelSafe{connection_class.__name__}", (CancelSafe, connection_class), {})
