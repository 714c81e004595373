"""Running a function in a child forked from a warm server, without blocking the loop.

A fresh interpreter that imports pdfium costs ~0.2 s of CPU, more than reading a scan's
text layer. `fork_server` imports the reader once and forks a child per call in
milliseconds, and each child is still a process of its own: killed alone when it overruns
or its job is cancelled, limited alone in memory, its crash nobody else's (a shared process
pool has none of those properties). (multiprocessing's forkserver would do, but on Python
3.11 each of its children re-imports the parent's main script, arq's CLI included.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pipelines
from pipelines.errors import TransientError


class ForkServer:
    """One `fork_server` process for `target` ("module:function"), started on first use."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._process: asyncio.subprocess.Process | None = None
        self._exchange = asyncio.Lock()
        self._cleanups: set[asyncio.Task] = set()

    async def call(self, args: Sequence[object], *, timeout: float) -> int:
        """Run the target with `args` in a new child; its exit code (negative: the signal
        that killed it). Raises `TimeoutError` when it overruns `timeout`, after killing it;
        a cancelled caller kills it too."""
        starting = asyncio.ensure_future(self._ask({"call": list(args)}))
        try:
            pid = (await asyncio.shield(starting))["pid"]
        except asyncio.CancelledError:
            starting.add_done_callback(self._end_abandoned)
            raise
        pidfd = os.pidfd_open(pid)  # the child is not reaped until we say so: no pid reuse
        try:
            async with asyncio.timeout(timeout):
                await _readable(pidfd)
        except BaseException:
            await asyncio.shield(self._end(pid, pidfd, kill=True))
            raise
        return await asyncio.shield(self._end(pid, pidfd, kill=False))

    async def aclose(self) -> None:
        await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def _end(self, pid: int, pidfd: int, *, kill: bool) -> int:
        try:
            if kill:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                await _readable(pidfd)
        finally:
            os.close(pidfd)
        return (await self._ask({"reap": pid}))["status"]

    def _end_abandoned(self, starting: asyncio.Future) -> None:
        if starting.cancelled() or starting.exception() is not None:
            return
        pid = starting.result()["pid"]
        cleanup = asyncio.ensure_future(self._end(pid, os.pidfd_open(pid), kill=True))
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def _ask(self, request: dict) -> dict:
        async with self._exchange:
            process = await self._running()
            process.stdin.write(json.dumps(request).encode() + b"\n")
            try:
                await process.stdin.drain()
                line = await process.stdout.readline()
            except ConnectionError:
                line = b""
            if not line:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                self._process = None  # a new server for the next call
                raise TransientError("the document reader's fork server died", type="reader_unavailable")
            return json.loads(line)

    async def _running(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pipelines.documents.fork_server", self._target,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
        return self._process


async def _readable(fd: int) -> None:
    """Wait, without a thread, until `fd` (a pidfd: the process has ended) is readable."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _pythonpath() -> str:
    """The server must import this package however the worker was started."""
    root = str(Path(pipelines.__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root
