"""`python -m bench [NAME…] [--quick]`: run the benchmarks, print tables, update bench/RESULTS.md.

`queue`, `crash`, `latency`, `jobs` and `api` run here and write their sections; `videos`, `documents`,
`replicas`, `extraction`, `cli_startup` and `workflows` are their own commands (`python -m bench.videos`, …), run as subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aredis
from rich.console import Console

from testkit import postgres
from testkit.redis_server import RedisServer

from . import api, jobs, machine, sync_standby
from .context import BenchContext
from .queue import crash, latency, throughput
from .queue.runner import PEERS
from .report import RESULTS_PATH, write_section

#: Benchmarks with their own command line, run as `python -m bench.NAME [--quick]`.
STANDALONE = tuple(
    name
    for name in ("videos", "documents", "replicas", "extraction", "cli_startup", "workflows")
    if (Path(__file__).parent / f"{name}.py").exists()
)
#: Run order: the queue benchmark goes last so its ratio is the command's last line.
BENCHMARKS = (*STANDALONE, "api", "crash", "latency", "jobs", "queue")
#: Tables written to a pipe or file get room for their columns instead of rich's 80.
PIPED_WIDTH = 150
FULL = {"jobs": 10_000, "repeat": 3, "crash_cap": 330.0, "api_seconds": 30.0, "latency_seconds": 20.0}
QUICK = {"jobs": 500, "repeat": 1, "crash_cap": 60.0, "api_seconds": 3.0, "latency_seconds": 3.0}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition, 60 s crash cap")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--jobs", type=int, help="jobs per throughput run (default 10,000, quick 500)")
    parser.add_argument("--concurrency", type=int, default=100, help="jobs at once per worker (default 100)")
    parser.add_argument("--crash-jobs", type=int, default=100, help="jobs held by the killed worker (default 100)")
    parser.add_argument("--crash-cap", type=float, help="seconds to wait for recovery (default 330, quick 60)")
    parser.add_argument("--peers", type=lambda text: text.split(","), help=f"subset of peers: {','.join(PEERS)}")
    parser.add_argument("--api-seconds", type=float, help="seconds per API load phase (default 30, quick 3)")
    parser.add_argument(
        "--latency-seconds", type=float, help="seconds of steady load per latency run (default 20, quick 3)"
    )
    parser.add_argument(
        "--sync-standby",
        action="store_true",
        help="api: on a primary with a streaming standby, asynchronous then synchronous (bench/sync_standby.py)",
    )
    parser.add_argument("--redis-url", help="use this Redis (its database is FLUSHDB'd!) instead of a private one")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    args = parser.parse_args(argv)
    args.argv = argv
    if unknown := set(args.names) - set(BENCHMARKS):
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    if args.peers and (unknown := set(args.peers) - PEERS.keys()):
        parser.error(f"unknown peer(s) {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
    defaults = QUICK if args.quick else FULL
    args.jobs = args.jobs or defaults["jobs"]
    args.repeat = args.repeat or defaults["repeat"]
    args.crash_cap = args.crash_cap or defaults["crash_cap"]
    args.api_seconds = args.api_seconds or defaults["api_seconds"]
    args.latency_seconds = args.latency_seconds or defaults["latency_seconds"]
    if args.concurrency < args.crash_jobs:
        parser.error("--concurrency must be at least --crash-jobs: worker A has to hold every job at once")
    return args


@asynccontextmanager
async def redis_url(given: str | None) -> AsyncIterator[str]:
    if given:
        yield given
        return
    with RedisServer() as server:
        yield server.url


async def run_standalone(name: str, quick: bool, results: Path) -> None:
    """A pipeline benchmark with its own command line; it prints (and records) its own results."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"bench.{name}",
        *(["--quick"] if quick else []),
        "--results",
        str(results.resolve()),
        cwd=Path(__file__).parent.parent,
    )
    if await process.wait() != 0:
        raise SystemExit(f"python -m bench.{name} failed with exit status {process.returncode}")


async def main(argv: list[str]) -> None:
    args = parse(argv)
    console = Console()
    if not console.is_terminal:
        console.width = PIPED_WIDTH
    names = [name for name in BENCHMARKS if name in (args.names or BENCHMARKS)]
    with postgres.private_server():
        await run(args, console, names)


async def run(args: argparse.Namespace, console: Console, names: list[str]) -> None:
    async with redis_url(args.redis_url) as url:
        redis = aredis.Redis.from_url(url)
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-logs-") as log_dir:
            context = BenchContext(
                redis_url=url,
                redis=redis,
                console=console,
                machine=await machine.describe(redis),
                command=shlex.join(["python", "-m", "bench", *args.argv]),
                repeat=args.repeat,
                concurrency=args.concurrency,
                jobs=args.jobs,
                crash_jobs=args.crash_jobs,
                crash_cap_s=args.crash_cap,
                peers=args.peers,
                log_dir=Path(log_dir),
                api_seconds=args.api_seconds,
                latency_seconds=args.latency_seconds,
                sync_standby=args.sync_standby,
            )
            for label, value in context.machine.items():
                console.print(f"{label}: {value}", highlight=False)
            try:
                for name in names:
                    headlines: list[str] = []
                    if name in STANDALONE:
                        await run_standalone(name, args.quick, args.results)
                        continue
                    if name == "api":
                        section = await (sync_standby.run(context) if context.sync_standby else api.run(context))
                    elif name == "crash":
                        section = await crash.run(context)
                    elif name == "latency":
                        section = await latency.run(context)
                    elif name == "jobs":
                        section, headlines = await jobs.run(context)
                    else:
                        section, headline = await throughput.run(context)
                        headlines = [headline]
                    section.machine = {**section.machine, "Load average at end (1/5/15 min)": machine.load_average()}
                    section.print(console)
                    write_section(section, args.results)
                    for headline in headlines:
                        print(headline, flush=True)
            finally:
                await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
