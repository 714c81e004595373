"""ffmpeg and ffprobe as the video pipeline runs them: a missing binary is this worker's
problem (another worker may have it: retry), an absurd amount of output is the file's."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.errors import PermanentError, TransientError
from pipelines.subprocesses import Finished, LineHandler, OutputTooLarge, run_tool


async def run_ffmpeg(args: Sequence[str], *, on_line: LineHandler | None = None) -> Finished:
    try:
        return await run_tool(args, on_line=on_line)
    except FileNotFoundError:
        raise TransientError(f"{args[0]} is not installed on this worker", type="ffmpeg_unavailable") from None
    except OutputTooLarge:
        raise PermanentError("the tool's output is implausibly large", type="corrupt_video") from None
