"""Running command-line tools (ffmpeg, ffprobe, tesseract) so that nothing outlives the job.

Each tool runs in its own session (process group), so a cancel or timeout signals the tool
and anything it spawned: SIGTERM first, SIGKILL after a short grace, then the process is
awaited so no zombie or orphan outlives the task. The CancelledError still propagates,
even when it lands while the tool is still being started. If the worker itself dies
(kill -9), Linux kills the tool too (PR_SET_PDEATHSIG): ffmpeg would otherwise keep
transcoding for nobody.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE_SECONDS = 1.0
STDERR_TAIL_LINES = 20
MAX_STDOUT_BYTES = 4 * 1024 * 1024

LineHandler = Callable[[str], Awaitable[None] | None]


class OutputTooLarge(Exception):
    """The tool printed more than `MAX_STDOUT_BYTES`: no sane run of it does."""


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


async def run_tool(
    args: Sequence[str],
    *,
    on_line: LineHandler | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run `args` to completion; stdout lines go to `on_line` (sync or async) if given.
    Raises `FileNotFoundError` if the tool is not installed, `TimeoutError` (after
    stopping it) past `timeout`, `OutputTooLarge` past `MAX_STDOUT_BYTES`."""
    process = await _start(args, env)
    assert process.stdout is not None and process.stderr is not None  # _start pipes both
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    stderr_reader = asyncio.create_task(_read_lines(process.stderr, tail.append))
    try:
        async with asyncio.timeout(timeout):
            stdout = await _read_stdout(process.stdout, on_line)
            returncode = await process.wait()
            await stderr_reader
    except BaseException:
        stderr_reader.cancel()
        await terminate(process)
        raise
    return Finished(returncode, stdout, "\n".join(tail))


async def _start(args: Sequence[str], env: Mapping[str, str] | None) -> asyncio.subprocess.Process:
    """The started tool; a cancel that lands while it starts still stops it."""
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # Exception: it never started, nothing to stop
            await terminate(await starting)
        raise


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
            raise OutputTooLarge(f"more than {MAX_STDOUT_BYTES} bytes on stdout")
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
