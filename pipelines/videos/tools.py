"""ffmpeg and ffprobe as the video pipeline runs them: a missing binary fails the job at
once, saying how to install it (retrying on a host without it cannot help); an absurd
amount of output is the file's fault."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.subprocesses import Finished, LineHandler, OutputTooLarge, run_tool
from pipelines.system_tools import missing_tool
from service.errors import PermanentError


async def run_ffmpeg(args: Sequence[str], *, on_line: LineHandler | None = None) -> Finished:
    try:
        return await run_tool(args, on_line=on_line)
    except FileNotFoundError:
        raise missing_tool(args[0]) from None
    except OutputTooLarge:
        raise PermanentError("the tool's output is implausibly large", type="corrupt_video") from None
