"""Write-combining: many coroutines' identical writes, run as one statement or pipeline.

A worker runs up to `WORKER_MAX_JOBS` jobs at once, and each of them writes the same few
ledger rows (claim, stage started, stage finished, job ended). One round trip and one
commit per write per job makes PostgreSQL's commits the worker's ceiling; a `Batcher`
collects the writes that arrive while the previous batch is in flight and runs them
together. Nothing waits for a timer: a lone write goes out at once, as a batch of one.
A batcher may keep more than one batch in flight (`in_flight`): a write that arrives
just after a batch left then goes out at once too, instead of waiting for that batch's
round trip and then its own; under load the batches are as big as ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: A batch function: for each item, its result or the exception it gets.
RunBatch = Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]]

MAX_BATCH = 200
#: Batches in flight at once for the writes between a job's enqueue and its start (the
#: tenant's admission, the ledger INSERT, the hand-off to arq, the worker's claim): a job
#: arriving just after a batch left goes at once instead of after that batch's round trip.
ON_THE_WAY_IN_FLIGHT = 2


class Batcher(Generic[Item, Result]):
    """Runs `run(items)` for the items submitted concurrently, one batch in flight at a time.

    `key(item)` names what must not appear twice in one batch (one job's writes stay in
    order: the second waits for the next batch). If a batch fails with one of `split_on`
    (an error in the data, a deadlock with another worker), its items are run one by one so
    one bad item cannot sink the rest; any other error (the server is down) fails them all.
    With `linger`, a batch waits that many seconds for company before it goes: for writes
    nobody waits for (`post`), where a bigger batch costs nothing but that delay. With
    `in_flight` above one, up to that many batches run at once (never two of one key).
    """

    def __init__(
        self,
        run: RunBatch[Item, Result],
        *,
        key: Callable[[Item], Hashable],
        split_on: tuple[type[Exception], ...] = (),
        max_batch: int = MAX_BATCH,
        linger: float = 0.0,
        in_flight: int = 1,
    ) -> None:
        self._run = run
        self._linger = linger
        self._key = key
        self._split_on = split_on
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._flushers: set[asyncio.Task] = set()
        self._running_keys: set[Hashable] = set()  # the keys of the batches in flight

    @property
    def unsent(self) -> int:
        """Items waiting for a batch (not counting the one in flight)."""
        return len(self._pending)

    def post(self, item: Item) -> asyncio.Future:
        """Submit without waiting: for best-effort writes whose outcome nobody needs (the
        batch function handles its own errors), though the future says when it is written.
        `drain()` before closing what they use."""
        future = self._add(item)
        future.add_done_callback(_ignore_outcome)
        return future

    async def drain(self) -> None:
        """Until every item submitted so far has been run."""
        while self._flushers:
            await asyncio.wait(self._flushers)

    async def submit(self, item: Item) -> Result:
        """The item's result once its batch has run; a cancelled caller still waits for its
        write to land, so whatever it writes next (a failure, say) comes after it."""
        future = self._add(item)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                with contextlib.suppress(BaseException):
                    await future
            raise

    def _add(self, item: Item) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._flushers) < self._in_flight and len(self._pending) == 1:  # the others have theirs
            self._flushers.add(asyncio.create_task(self._flush()))
        return future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self._linger)  # at least the jobs woken in this loop iteration join
            while batch := self._take():
                keys = {self._key(item) for item, _ in batch}
                self._running_keys |= keys
                try:
                    await self._run_batch(batch)
                finally:
                    self._running_keys -= keys
        except BaseException:
            for _, future in self._pending:  # cancelled at shutdown: nobody may wait forever
                future.cancel()
            self._pending = []
            raise
        finally:
            self._flushers.discard(asyncio.current_task())

    def _take(self) -> list[tuple[Item, asyncio.Future]]:
        batch: list[tuple[Item, asyncio.Future]] = []
        rest: list[tuple[Item, asyncio.Future]] = []
        keys = set(self._running_keys)  # another batch in flight writes them: after it
        for entry in self._pending:
            key = self._key(entry[0])
            if len(batch) < self._max_batch and key not in keys:
                keys.add(key)
                batch.append(entry)
            else:
                rest.append(entry)
        self._pending = rest
        return batch

    async def _run_batch(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            outcomes = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and isinstance(exc, self._split_on):
                for entry in batch:
                    await self._run_batch([entry])
                return
            outcomes = [exc] * len(batch)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _ignore_outcome(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio would otherwise log it as never retrieved
