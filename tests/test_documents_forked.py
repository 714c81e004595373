"""The fork server behind the page readers: exit codes, kills, cancels, a dead server."""

import asyncio
import signal
import time

import psutil
import pytest

from pipelines.documents.forked import ForkServer
from service.errors import TransientError
from testkit.service import until

pytestmark = pytest.mark.integration


def fork_server_process() -> psutil.Process:
    [server] = [child for child in psutil.Process().children() if "pipelines.documents.fork_server" in child.cmdline()]
    return server


async def run(server: ForkServer, *args: object) -> int:
    """A child running the target with `args`, to its exit code."""
    return await (await server.spawn(list(args))).wait(timeout=30)


@pytest.fixture
async def sleeper():
    server = ForkServer("time:sleep")
    yield server
    await server.aclose()


async def test_each_call_is_a_child_with_its_own_exit_code():
    server = ForkServer("os:_exit")
    try:
        assert [await (await server.spawn([code])).wait(timeout=5) for code in (3, 0, 7)] == [3, 0, 7]
        assert fork_server_process().children() == []
    finally:
        await server.aclose()


async def test_a_child_killed_by_a_signal_says_which():
    server = ForkServer("os:abort")
    try:
        assert await (await server.spawn([])).wait(timeout=5) == -signal.SIGABRT
    finally:
        await server.aclose()


async def test_an_overrunning_child_is_killed_and_reaped(sleeper: ForkServer):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await (await sleeper.spawn([60])).wait(timeout=0.3)
    assert time.monotonic() - started < 30
    assert fork_server_process().children() == []


async def test_a_cancelled_call_kills_its_child(sleeper: ForkServer):
    call = asyncio.create_task(run(sleeper, 60))
    await until(lambda: any(p.children() for p in psutil.Process().children() if "fork_server" in str(p.cmdline())))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # A cancel that lands before the server has named the child's pid kills it just after.
    await until(lambda: fork_server_process().children() == [])


async def test_a_dead_server_is_replaced_by_the_next_call(sleeper: ForkServer):
    assert await run(sleeper, 0) == 0
    first = fork_server_process()
    first.kill()
    await until(lambda: not first.is_running())
    try:
        outcome = await run(sleeper, 0)
    except TransientError:  # the loop had not yet noticed the death: this call says so, plainly
        outcome = await run(sleeper, 0)
    assert outcome == 0
    assert fork_server_process().pid != first.pid


async def test_the_server_goes_with_its_owner():
    server = ForkServer("time:sleep")
    await run(server, 0)
    process = fork_server_process()
    await server.aclose()
    assert not process.is_running()


async def test_concurrent_calls_do_not_wait_for_each_others_answers(sleeper: ForkServer):
    """Requests are pipelined: with the server stopped, every call's request is already
    written and awaiting its answer, none queued behind another's round trip."""
    assert await run(sleeper, 0) == 0
    server = fork_server_process()
    server.suspend()
    try:
        calls = [asyncio.create_task(run(sleeper, 0)) for _ in range(5)]
        await until(lambda: len(sleeper._server._waiting) == 5)
    finally:
        server.resume()
    assert await asyncio.gather(*calls) == [0] * 5
