"""Run ffmpeg/ffprobe so that cancelling the awaiting task leaves nothing behind.

Each tool runs in its own session (process group), so a cancel or timeout signals the tool
and anything it spawned: SIGTERM first, SIGKILL after a short grace, then the process is
awaited so no zombie or orphan outlives the task. The CancelledError still propagates.
If the worker itself dies (kill -9), Linux kills the tool too (PR_SET_PDEATHSIG): ffmpeg
would otherwise keep transcoding for nobody.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PermanentError, TransientError

KILL_GRACE_SECONDS = 1.0
STDERR_TAIL_LINES = 20
MAX_STDOUT_BYTES = 4 * 1024 * 1024

LineHandler = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    """Everything the tool printed, unless lines went to `on_line` instead."""
    stderr_tail: str
    """The last lines of stderr, enough to explain a failure without unbounded memory."""

    def explain(self, path: Path) -> str:
        """The stderr tail fit for a client: bounded, naming `path` without the worker's directories."""
        return self.stderr_tail.replace(str(path.absolute()), path.name)[-1000:] or "no error output"


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def run_tool(args: Sequence[str], *, on_line: LineHandler | None = None) -> Finished:
    """Run `args` to completion; stdout lines go to `on_line` (sync or async) if given."""
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except FileNotFoundError:
        raise TransientError(f"{args[0]} is not installed on this worker", type="ffmpeg_unavailable") from None
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    stderr_reader = asyncio.create_task(_read_lines(process.stderr, tail.append))
    try:
        stdout = await _read_stdout(process.stdout, on_line)
        returncode = await process.wait()
        await stderr_reader
    except BaseException:
        stderr_reader.cancel()
        await terminate(process)
        raise
    return Finished(returncode, stdout, "\n".join(tail))


async def terminate(process: asyncio.subprocess.Process) -> None:
    """Stop the tool's whole process group: SIGTERM, then SIGKILL after the grace."""
    if process.returncode is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            await asyncio.shield(process.wait())
    except TimeoutError:
        pass
    finally:
        # Also reached when cancelled again mid-grace: never leave the group running.
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
    await asyncio.shield(process.wait())


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


async def _read_stdout(stream: asyncio.StreamReader, on_line: LineHandler | None) -> bytes:
    if on_line is not None:
        await _read_lines(stream, on_line)
        return b""
    data = bytearray()
    while chunk := await stream.read(65536):
        data += chunk
        if len(data) > MAX_STDOUT_BYTES:
            raise PermanentError("the tool's output is implausibly large", type="corrupt_video")
    return bytes(data)


async def _read_lines(stream: asyncio.StreamReader, handle: LineHandler) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the reader's limit: dropped, keep reading
            continue
        if not line:
            return
        result = handle(line.decode(errors="replace").rstrip())
        if inspect.isawaitable(result):
            await result
