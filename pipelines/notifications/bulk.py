"""Send one notification to many recipients: concurrent, bounded, rate-limited, per-recipient outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from service.errors import JobError
from service.ratelimit import RateLimiter

from .channels import Delivery


@dataclass(frozen=True)
class Outcome:
    recipient: str
    delivery: Delivery | None = None
    error: JobError | None = None

    @property
    def ok(self) -> bool:
        return self.delivery is not None


async def fan_out(
    recipients: Sequence[str],
    send_one: Callable[[str], Awaitable[Delivery]],
    *,
    channel: str,
    limiter: RateLimiter | None = None,
    concurrency: int = 10,
) -> list[Outcome]:
    """Call `send_one` for each recipient, at most `concurrency` at a time, each after a
    token from the channel's shared budget. One recipient's JobError does not stop the
    others; any other exception (a bug) cancels the rest and propagates (in an
    ExceptionGroup, as asyncio.TaskGroup raises it).
    Outcomes come back in the order of `recipients`.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    outcomes: list[Outcome | None] = [None] * len(recipients)
    pending = iter(enumerate(recipients))

    async def worker() -> None:
        # A fixed pool of workers pulling from one iterator: memory stays bounded by
        # `concurrency`, however many recipients there are.
        for index, recipient in pending:
            try:
                if limiter is not None:
                    await limiter.acquire(channel)
                outcomes[index] = Outcome(recipient, delivery=await send_one(recipient))
            except JobError as error:
                outcomes[index] = Outcome(recipient, error=error)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(recipients))):
            group.create_task(worker())
    return [outcome for outcome in outcomes if outcome is not None]
