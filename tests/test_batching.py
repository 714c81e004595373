"""Write-combining (`service.batching`): who shares a batch, in what order, and what one
bad item or a cancelled caller does to the others."""

import asyncio

import pytest

from service.batching import Batcher
from testkit.service import until


class Recorder:
    """A batch function that records its batches; items named in `bad` sink any batch they are in."""

    def __init__(self, bad: frozenset = frozenset(), delay: float = 0.0) -> None:
        self.batches: list[list] = []
        self.bad = bad
        self.delay = delay

    async def __call__(self, items):
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.bad & set(items):
            raise ValueError(f"bad items {sorted(self.bad & set(items))}")
        return [f"done {item}" for item in items]


async def test_concurrent_submits_share_one_batch_and_get_their_own_results():
    run = Recorder()
    batcher = Batcher(run, key=lambda item: item)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(5)))
    assert results == [f"done {n}" for n in range(5)]
    assert run.batches == [[0, 1, 2, 3, 4]]


async def test_items_arriving_during_a_batch_go_in_the_next_one():
    run = Recorder(delay=0.05)
    batcher = Batcher(run, key=lambda item: item)
    first = asyncio.ensure_future(batcher.submit("a"))
    await until(lambda: run.batches)  # "a" is in flight
    assert await asyncio.gather(batcher.submit("b"), batcher.submit("c")) == ["done b", "done c"]
    await first
    assert run.batches == [["a"], ["b", "c"]]


async def test_one_key_twice_waits_for_the_next_batch_in_order():
    run = Recorder()
    batcher = Batcher(run, key=lambda item: item[0])
    await asyncio.gather(batcher.submit(("job1", 1)), batcher.submit(("job1", 2)), batcher.submit(("job2", 1)))
    assert run.batches == [[("job1", 1), ("job2", 1)], [("job1", 2)]]


async def test_with_two_in_flight_a_write_goes_at_once_but_never_beside_its_own_key():
    gate, batches = asyncio.Event(), []

    async def run(items):
        batches.append(list(items))
        await gate.wait()
        return [f"done {item}" for item in items]

    batcher = Batcher(run, key=lambda item: item[0], in_flight=2)
    first = asyncio.ensure_future(batcher.submit(("job1", 1)))
    await until(lambda: batches)  # in flight, and held there
    later = [asyncio.ensure_future(batcher.submit(item)) for item in (("job2", 1), ("job1", 2))]
    await until(lambda: len(batches) == 2)
    assert batches == [[("job1", 1)], [("job2", 1)]]  # job1's second write waits for its first
    gate.set()
    assert await asyncio.gather(first, *later) == ["done ('job1', 1)", "done ('job2', 1)", "done ('job1', 2)"]
    assert batches[2:] == [[("job1", 2)]]


async def test_a_bad_item_sinks_only_itself_when_split_on_its_error():
    run = Recorder(bad=frozenset({2}))
    batcher = Batcher(run, key=lambda item: item, split_on=(ValueError,))
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True)
    assert outcomes[:2] == ["done 0", "done 1"] and outcomes[3] == "done 3"
    assert isinstance(outcomes[2], ValueError)
    assert run.batches[0] == [0, 1, 2, 3] and run.batches[1:] == [[0], [1], [2], [3]]


async def test_an_error_not_split_on_fails_the_whole_batch():
    batcher = Batcher(Recorder(bad=frozenset({1})), key=lambda item: item)
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)


async def test_a_cancelled_caller_still_waits_for_its_write_to_land():
    run = Recorder(delay=0.05)
    batcher = Batcher(run, key=lambda item: item)
    caller = asyncio.ensure_future(batcher.submit("x"))
    await until(lambda: run.batches)  # being written
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert run.batches == [["x"]] and batcher.unsent == 0  # it landed before the cancel returned


async def test_posts_linger_into_one_batch_and_drain_waits_for_them():
    run = Recorder()
    batcher = Batcher(run, key=id, linger=0.05)
    items = [f"event {n}" for n in range(3)]
    batcher.post(items[0])
    await asyncio.sleep(0.01)  # time passes, still under the linger: the next posts join the same batch
    batcher.post(items[1])
    batcher.post(items[2])
    assert batcher.unsent == 3
    await batcher.drain()
    assert run.batches == [items] and batcher.unsent == 0


async def test_a_failing_post_is_dropped_quietly(caplog):
    batcher = Batcher(Recorder(bad=frozenset({"bad"})), key=id)
    batcher.post("bad")
    await batcher.drain()
    assert batcher.unsent == 0
    assert "never retrieved" not in caplog.text
