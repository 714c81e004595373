"""Render tenants' templates in a child process that may be killed: bounded memory and time.

Jinja's sandbox keeps a template away from Python's internals, but a template can still
loop for hours or build a string of a billion characters, and a thread cannot be stopped.
The child (`python -m service.templating.sandbox`) renders one request at a time under an address
space limit (MAX_MEMORY); a render that takes longer than RENDER_TIMEOUT is answered
`template_too_slow` and the child is killed, to be started again on the next request.
Requests and answers are JSON lines over the child's stdin and stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from service.errors import PermanentError
from service.templating import MAX_OUTPUT, RenderProblem, Source, render_part

MAX_MEMORY = 512 * 1024 * 1024
RENDER_TIMEOUT = 2.0
# The child gets none of the service's settings (secrets, URLs): only what starts Python.
CHILD_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LC_ALL")
# An answer is three parts of MAX_OUTPUT characters, each up to 6 bytes once JSON-escaped.
MAX_ANSWER_BYTES = 3 * 6 * MAX_OUTPUT + 4096


def _answer(request: dict) -> dict:
    try:
        rendered = {part: render_part(part, text, request["data"]) for part, text in request["parts"].items()}
    except RenderProblem as problem:
        return {"error": {"type": problem.kind, "message": problem.message}}
    except MemoryError:
        return {"error": {"type": "template_too_large", "message": "rendering needs more memory than allowed"}}
    except RecursionError:
        return {"error": {"type": "template_error", "message": "the template recurses too deeply"}}
    return {"rendered": rendered}


def serve() -> None:
    """The child's loop: one JSON request per line on stdin, one answer per line on stdout."""
    resource.setrlimit(resource.RLIMIT_AS, (MAX_MEMORY, MAX_MEMORY))
    for line in sys.stdin:
        sys.stdout.write(json.dumps(_answer(json.loads(line))) + "\n")
        sys.stdout.flush()


class Renderer:
    """The client side: one child per event loop, started on first use, one render at a time."""

    def __init__(self) -> None:
        self._child: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> asyncio.subprocess.Process:
        if self._child is None or self._child.returncode is not None:
            self._child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service.templating.sandbox",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=MAX_ANSWER_BYTES,
                env={name: os.environ[name] for name in CHILD_ENVIRONMENT if name in os.environ},
            )
        return self._child

    def _kill(self) -> None:
        if self._child is not None and self._child.returncode is None:
            self._child.kill()
        self._child = None

    async def render(self, source: Source, data: Mapping[str, Any]) -> dict[str, str]:
        """Each part of `source` rendered with `data`; PermanentError when it cannot be
        (a variable missing, an unsafe attribute, too large, too slow)."""
        request = json.dumps({"parts": source.parts(), "data": dict(data)}).encode() + b"\n"
        async with self._lock:
            child = await self._started()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write(request)
                await child.stdin.drain()
                async with asyncio.timeout(RENDER_TIMEOUT):
                    line = await child.stdout.readline()
            except TimeoutError:
                self._kill()
                raise PermanentError(
                    f"the template took longer than {RENDER_TIMEOUT:g} s to render", type="template_too_slow"
                ) from None
            except (ConnectionError, ValueError):  # the child died, or its answer overflowed
                line = b""
            if not line:
                self._kill()
                raise PermanentError("the template could not be rendered within its limits", type="template_too_large")
        answer = json.loads(line)
        if "error" in answer:
            raise PermanentError(answer["error"]["message"], type=answer["error"]["type"])
        return answer["rendered"]


_renderers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Renderer] = weakref.WeakKeyDictionary()


def renderer() -> Renderer:
    """This event loop's renderer (a child's pipes belong to the loop that started it)."""
    loop = asyncio.get_running_loop()
    if loop not in _renderers:
        _renderers[loop] = Renderer()
    return _renderers[loop]


if __name__ == "__main__":
    serve()
