"""Running a child process without blocking the loop, and never leaving it behind.

The child is killed when the timeout passes or the awaiting task is cancelled (a job
cancelled or a worker shutting down), so a hung tool cannot pin a CPU forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run_process(
    args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> Completed:
    """Run `args` to completion; raises `TimeoutError` (after killing it) when too slow."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return Completed(process.returncode, stdout, stderr)
