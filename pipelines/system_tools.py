"""The programs pipelines run (ffmpeg, ffprobe, tesseract): whether this host has them.

Probed once per process, so `conveyor up`'s banner and `/readyz` can say what is missing
before a job finds out, and a job that needs a missing one fails at once with how to
install it (`missing_tool`), instead of being retried on a host that will never have it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass

from service.errors import PermanentError

PROBE_TIMEOUT = 10.0
OCR_LANGUAGE = "eng"  # the language TesseractOCR reads


@dataclass(frozen=True)
class Tool:
    name: str
    needed_for: str
    install: str  # Debian/Ubuntu; the README says the same for other systems


TOOLS = {
    tool.name: tool
    for tool in (
        Tool("ffmpeg", "videos", "apt-get install ffmpeg"),
        Tool("ffprobe", "videos", "apt-get install ffmpeg"),
        Tool("tesseract", "documents without a text layer (OCR)", "apt-get install tesseract-ocr"),
    )
}


def missing_tool(name: str) -> PermanentError:
    """The job's error when `name` is not installed on this host."""
    tool = TOOLS[name]
    return PermanentError(
        f"{name} is not installed on this host (needed for {tool.needed_for}):"
        f" install it ({tool.install}) and retry the job",
        type="missing_tool",
    )


def _output(args: list[str]) -> list[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    return (done.stdout or done.stderr).strip().splitlines()


def _probe(tool: Tool) -> dict:
    path = shutil.which(tool.name)
    if path is None:
        return {"status": "warn", "output": f"missing: needed for {tool.needed_for}; install it ({tool.install})"}
    try:
        if tool.name != "tesseract":
            return {"status": "pass", "version": (_output([path, "-version"]) or ["?"])[0]}
        languages = [line.strip() for line in _output([path, "--list-langs"])[1:]]  # after a heading line
    except (OSError, subprocess.SubprocessError) as exc:
        return {"status": "warn", "output": f"{path} does not run: {exc}"}
    if OCR_LANGUAGE not in languages:
        return {
            "status": "warn",
            "languages": languages,
            "output": f"no {OCR_LANGUAGE!r} language data: install it (apt-get install tesseract-ocr-{OCR_LANGUAGE})",
        }
    return {"status": "pass", "languages": languages}


@functools.cache
def probe_tools() -> dict[str, dict]:
    """Each tool's health check (`pass`, or `warn` with what to do), in the /readyz format."""
    return {name: _probe(tool) for name, tool in TOOLS.items()}
