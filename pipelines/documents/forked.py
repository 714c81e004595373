"""Children forked from a warm server, watched without blocking the loop.

A fresh interpreter that imports pdfium costs ~0.2 s of CPU, more than reading a scan's
text layer. `fork_server` imports the reader once and forks children from it in
milliseconds, and each child is a process of its own: killed alone when it overruns or its
job is cancelled, limited alone in memory, its crash nobody else's (a shared process pool
has none of those properties). (multiprocessing's forkserver would do, but on Python 3.11
each of its children re-imports the parent's main script, arq's CLI included.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import select
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pipelines
from service.errors import TransientError


class ForkServer:
    """One `fork_server` process for `target` ("module:function"), started on first use."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._server: _Server | None = None
        self._starting = asyncio.Lock()
        self._cleanups: set[asyncio.Task] = set()

    async def spawn(self, args: Sequence[object]) -> Child:
        """Fork a child that runs the target with `args`. It stays unreaped until `Child.end`,
        so it can be watched and signalled with no risk of its pid being reused meanwhile."""
        server = await self._running()
        starting = asyncio.ensure_future(server.ask({"call": list(args)}))
        try:
            pid = (await asyncio.shield(starting))["pid"]
        except asyncio.CancelledError:
            starting.add_done_callback(lambda done: self._end_abandoned(server, done))
            raise
        return Child(server, pid)

    async def aclose(self) -> None:
        await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None

    def _end_abandoned(self, server: _Server, starting: asyncio.Future) -> None:
        """A child forked for a caller that was cancelled before it learnt the pid: kill it."""
        if starting.cancelled() or starting.exception() is not None:
            return
        cleanup = asyncio.ensure_future(Child(server, starting.result()["pid"]).end(kill=True))
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def _running(self) -> _Server:
        async with self._starting:
            if self._server is None or not self._server.alive:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "pipelines.documents.fork_server",
                    self._target,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env={**os.environ, "PYTHONPATH": _pythonpath()},
                    # Its own session, as tools get: a Ctrl-C or a SIGTERM sent to the worker's
                    # process group is the worker's to handle (it dies with the worker anyway).
                    start_new_session=True,
                )
                self._server = _Server(process)  # a dead one is replaced for the next call
        return self._server


class Child:
    """A forked child, watched through a pidfd until it has ended and been reaped."""

    def __init__(self, server: _Server, pid: int) -> None:
        self.pid = pid
        self._server = server
        self._pidfd = os.pidfd_open(pid)
        self._exit: asyncio.Future | None = None
        self._ending: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._ending is None and not select.select([self._pidfd], [], [], 0)[0]

    async def exited(self) -> None:
        """Return once the child has ended (it is not reaped: `end` does that). Any number
        may wait: the pidfd is watched once, without a thread, until it is readable."""
        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            loop.add_reader(self._pidfd, self._on_exit)
        await asyncio.shield(self._exit)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(None)

    async def wait(self, *, timeout: float | None = None) -> int:
        """Its exit code once it ends (negative: the signal that killed it). Raises
        `TimeoutError` when it overruns `timeout`, after killing it; a cancelled waiter kills it too."""
        try:
            async with asyncio.timeout(timeout):
                await self.exited()
        except BaseException:
            await asyncio.shield(self.end(kill=True))
            raise
        return await asyncio.shield(self.end(kill=False))

    def end(self, *, kill: bool) -> asyncio.Task:
        """Kill it if asked, wait for it to end, reap it: its exit code. Only the first call acts."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end(kill))
        return self._ending

    async def _end(self, kill: bool) -> int:
        try:
            if kill:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            await self.exited()
        finally:
            if self._exit is not None and not self._exit.done():  # cancelled before it ended
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
        if not self._server.alive:  # its server died and took it along (PR_SET_PDEATHSIG)
            return -signal.SIGKILL
        return (await self._server.ask({"reap": self.pid}))["status"]


class _Server:
    """One fork_server process and the replies it owes, oldest first."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None  # started with both piped
        self.process = process
        self._stdin, self._stdout = process.stdin, process.stdout
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._reader = asyncio.create_task(self._read_replies())

    @property
    def alive(self) -> bool:
        return not self._reader.done()

    async def ask(self, request: dict) -> dict:
        """Requests are pipelined: each is written at once and its reply, answered in order,
        resolves it. Waiting for each reply before the next request would cost every call
        two turns of a busy worker's event loop, one document after another."""
        reply = asyncio.get_running_loop().create_future()
        self._waiting.append(reply)  # with the write below, in one step: the order is kept
        self._stdin.write(json.dumps(request).encode() + b"\n")
        with contextlib.suppress(ConnectionError):  # a dead server: the reader fails the reply
            await self._stdin.drain()
        return await reply

    async def stop(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def _read_replies(self) -> None:
        try:
            while line := await self._stdout.readline():
                reply = self._waiting.popleft()
                if not reply.done():  # its caller may have gone; the answer is still its
                    reply.set_result(json.loads(line))
        finally:
            while self._waiting:
                reply = self._waiting.popleft()
                if not reply.done():
                    reply.set_exception(
                        TransientError("the document reader's fork server died", type="reader_unavailable")
                    )
        with contextlib.suppress(ProcessLookupError):  # its output closed: make sure it is gone
            self.process.kill()


def _pythonpath() -> str:
    """The server must import this package however the worker was started."""
    root = str(Path(pipelines.__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root
