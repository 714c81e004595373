"""`python -m bench.cli_startup [--repeat N]`: how long `conveyor --help` and the help of
every command take, each run a fresh process as a shell starts it (issue 19's goal: under
0.3 s). Drawing a command's help loads, builds and parses everything a run of it parses
with, so it stands for the command's parsing too.

Per command: the median (min–max) of --repeat runs after one warm-up, as wall time and as
CPU time (user + system, the kernel's accounting of the finished child), which the other
work on a shared machine disturbs less than the wall clock.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console

from bench import machine
from bench.report import RESULTS_PATH, Section, Spread, Table, seconds, write_section
from service.cli import app

GOAL_SECONDS = 0.3


def command_paths(command: click.Command = app, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """`()` for `conveyor` itself, then every command, depth first, in help order."""
    if not isinstance(command, click.Group) or not path:
        yield path
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            yield from command_paths(command.commands[name], (*path, name))


def conveyor() -> list[str]:
    """The console script installed beside this Python, as a user runs it."""
    script = Path(sys.executable).with_name("conveyor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `argv`, which must succeed."""
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu


def measure(path: tuple[str, ...], repeat: int) -> tuple[Spread, Spread]:
    argv = [*conveyor(), *path, "--help"]
    time_once(argv)  # warm-up: bytecode caches, page cache
    runs = [time_once(argv) for _ in range(repeat)]
    return Spread.of([wall for wall, _ in runs]), Spread.of([cpu for _, cpu in runs])


def main(args: argparse.Namespace, command: str) -> None:
    table = Table("`conveyor … --help`, one process per run", ["command", "wall s", "CPU s"])
    runs = {" ".join(["conveyor", *path, "--help"]): measure(path, args.repeat) for path in command_paths()}
    for name, (wall, cpu) in runs.items():
        table.rows.append([name, wall.format(seconds), cpu.format(seconds)])
    slowest, (wall, cpu) = max(runs.items(), key=lambda run: run[1][1].median)
    notes = [
        f"{args.repeat} runs per command after one warm-up: median (min–max).",
        f"Goal: under {GOAL_SECONDS} s. Slowest by CPU: `{slowest}`, {cpu.median:.3f} s of CPU, {wall.low:.3f} s"
        f" wall at best and {wall.median:.3f} s median: the wall clock adds the waits for a core of a shared"
        f" machine (load average at end {machine.load_average()}); on an idle one it is close to the CPU time.",
    ]
    section = Section(
        "cli-startup",
        "CLI start-up",
        command,
        time.strftime("%Y-%m-%d %H:%M %Z"),
        machine.host(),
        [table],
        notes,
    )
    section.print(Console())
    write_section(section, args.results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup", description=__doc__)
    parser.add_argument("--repeat", type=int, help="runs per command (default 7; quick 3)")
    parser.add_argument("--quick", action="store_true", help="3 runs per command")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    parsed = parser.parse_args()
    parsed.repeat = parsed.repeat or (3 if parsed.quick else 7)
    main(parsed, " ".join(["python -m bench.cli_startup", *sys.argv[1:]]))
