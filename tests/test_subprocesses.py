"""The tool runner every pipeline uses (ffmpeg, ffprobe, tesseract): whatever ends the
awaiting task, no tool process outlives it."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pipelines import subprocesses
from pipelines.subprocesses import OutputTooLarge, run_tool
from testkit.processes import tool_children

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]


async def test_a_cancel_at_any_moment_of_the_start_leaves_no_tool_behind():
    """The cancel lands before, during and after the tool's start (uvloop answers the spawn
    a few loop iterations later): each time the tool is stopped before the cancel returns."""
    for iterations in range(12):
        task = asyncio.create_task(run_tool(["sleep", "30"]))
        for _ in range(iterations):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tool_children("sleep") == [], f"a sleep survived a cancel after {iterations} loop iterations"


async def test_a_timeout_stops_the_tool_and_says_so():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_tool(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - started < 5
    assert tool_children("sleep") == []


async def test_a_tool_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch):
    monkeypatch.setattr(subprocesses, "KILL_GRACE_SECONDS", 0.2)
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(30)",
    ]
    ready = asyncio.Event()
    task = asyncio.create_task(run_tool(stubborn, on_line=lambda line: ready.set()))
    await asyncio.wait_for(ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [
        child for child in psutil.Process().children(recursive=True) if "SIG_IGN" in " ".join(child.cmdline())
    ] == []


async def test_output_is_bounded_and_the_tail_of_stderr_kept(monkeypatch):
    monkeypatch.setattr(subprocesses, "MAX_STDOUT_BYTES", 1000)
    with pytest.raises(OutputTooLarge):
        await run_tool(["head", "-c", "5000", "/dev/zero"])
    many_lines = "; ".join(f"echo line{i} >&2" for i in range(100))
    finished = await run_tool(["sh", "-c", f"{many_lines}; exit 3"])
    assert finished.returncode == 3
    assert finished.stderr_tail.splitlines() == [f"line{i}" for i in range(100 - subprocesses.STDERR_TAIL_LINES, 100)]


async def test_a_missing_tool_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        await run_tool(["conveyor-no-such-tool"])


def test_the_tool_dies_with_a_killed_worker():
    """kill -9 of the process that started the tool leaves no tool behind."""
    script = (
        "import asyncio\n"
        "from pipelines.subprocesses import run_tool\n"
        "asyncio.run(run_tool(['ffmpeg', '-nostdin', '-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10',"
        " '-t', '600', '-f', 'null', '-']))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 20
        children = []
        while not children and time.monotonic() < deadline:
            children = [c for c in psutil.Process(parent.pid).children() if c.name() == "ffmpeg"]
            time.sleep(0.1)
        assert children, "ffmpeg did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        if parent.poll() is None:
            parent.kill()
