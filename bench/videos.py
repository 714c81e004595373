"""How well one worker host's cores are used by video jobs: `python -m bench.videos [--quick]`.

Ten 30-second 1080p sources (quick: three 5-second 720p ones) are turned into the default
renditions (720p, 480p) and a thumbnail, all jobs at once as one worker runs them, twice:
with ffmpegs concurrent up to one per core (the worker's transcode slots), and one at a
time. Reported: wall time, CPU utilisation (the ffmpegs' CPU time over wall time × cores)
and frames encoded per second per core, printed and written to its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench.machine import host, load_average
from bench.report import RESULTS_PATH, Section, Table, write_section
from pipelines.videos import DEFAULT_RENDITIONS, RenditionPlan, plan_renditions, probe, transcode_all
from pipelines.videos.transcode import MAX_FPS


@dataclass(frozen=True)
class Workload:
    jobs: int
    seconds: int
    width: int
    height: int


FULL = Workload(jobs=10, seconds=30, width=1920, height=1080)
QUICK = Workload(jobs=3, seconds=5, width=1280, height=720)


@dataclass(frozen=True)
class Measurement:
    mode: str
    slots: int
    wall: float
    cpu: float
    frames: int

    def utilisation(self, cores: int) -> float:
        return self.cpu / (self.wall * cores)

    def fps_per_core(self, cores: int) -> float:
        return self.frames / self.wall / cores


def make_source(workload: Workload, path: Path) -> Path:
    """A moving test pattern with a tone, H.264/AAC like a phone's upload."""
    size = f"{workload.width}x{workload.height}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=s={size}:r=30:d={workload.seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={workload.seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def frames_encoded(plan: RenditionPlan) -> int:
    per_rendition = round(plan.source.duration * min(plan.source.fps, MAX_FPS))
    return per_rendition * len(plan.renditions)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_jobs(source: Path, plan: RenditionPlan, jobs: int, slots: int, work: Path) -> tuple[float, float]:
    """All jobs at once, sharing one worker's semaphore; (wall seconds, ffmpeg CPU seconds)."""
    semaphore = asyncio.Semaphore(slots)
    directories = [work / f"job-{slots}-{index}" for index in range(jobs)]
    for directory in directories:
        directory.mkdir()
    cpu_before, started = children_cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(transcode_all(source, plan, directory, slots=semaphore) for directory in directories))
    return time.perf_counter() - started, children_cpu_seconds() - cpu_before


async def bench(workload: Workload, cores: int) -> list[Measurement]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-videos-") as tmp:
        work = Path(tmp)
        source = await asyncio.to_thread(make_source, workload, work / "source.mp4")
        plan = plan_renditions(await probe(source, "video/mp4"), DEFAULT_RENDITIONS)
        frames = frames_encoded(plan) * workload.jobs
        results = []
        for mode, slots in (("concurrent (one per core)", cores), ("one at a time", 1)):
            wall, cpu = await run_jobs(source, plan, workload.jobs, slots, work)
            results.append(Measurement(mode, slots, wall, cpu, frames))
        return results


def ffmpeg_version() -> str:
    first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return first.removeprefix("ffmpeg version ").split(" Copyright")[0]


def section(workload: Workload, results: list[Measurement], cores: int, command: str, machine: dict) -> Section:
    """The table (one-at-a-time is the baseline of the speed-up), for the terminal and RESULTS.md."""
    title = (
        f"{workload.jobs} videos, {workload.seconds} s at {workload.width}x{workload.height} "
        f"→ {', '.join(f'{h}p' for h in DEFAULT_RENDITIONS)} + thumbnail, {cores} cores"
    )
    table = Table(title, ["mode", "ffmpeg slots", "wall s", "CPU use", "frames/s/core", "speed-up"])
    baseline = results[-1].wall
    for result in results:
        table.rows.append([
            result.mode, str(result.slots), f"{result.wall:.1f}", f"{result.utilisation(cores):.0%}",
            f"{result.fps_per_core(cores):.1f}", f"{baseline / result.wall:.2f}×",
        ])  # fmt: skip
    notes = [
        "All jobs start at once, as one worker would run them, sharing its transcode slots; "
        "CPU use is the ffmpegs' CPU time over wall time × cores.",
        f"frames/s/core counts output frames ({results[0].frames:,} in all: every rendition of every job).",
    ]
    return Section("videos", "Videos pipeline", command, time.strftime("%Y-%m-%d %H:%M %Z"), machine, [table], notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 × 5 s at 720p instead of 10 × 30 s at 1080p")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    args = parser.parse_args()
    workload = QUICK if args.quick else FULL
    cores = os.cpu_count() or 1
    machine = {**host(), "ffmpeg": ffmpeg_version(), "Load average at start (1/5/15 min)": load_average()}
    results = asyncio.run(bench(workload, cores))
    machine["Load average at end (1/5/15 min)"] = load_average()
    command = "python -m bench.videos" + (" --quick" if args.quick else "")
    result = section(workload, results, cores, command, machine)
    result.print(Console())
    write_section(result, args.results)


if __name__ == "__main__":
    main()
