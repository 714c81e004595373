"""What every benchmark needs from the command line and the run: Redis, sizes, where logs go."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aredis
from rich.console import Console

from .report import Section, Table

POLL_S = 0.05


@dataclass
class BenchContext:
    redis_url: str
    redis: aredis.Redis
    console: Console
    machine: dict[str, str]
    command: str
    repeat: int
    concurrency: int
    jobs: int
    crash_jobs: int
    crash_cap_s: float
    peers: list[str] | None
    log_dir: Path
    #: How long each API load phase runs.
    api_seconds: float = 30.0
    latency_seconds: float = 20.0
    #: The API benchmark measures a synchronous standby's cost instead (bench/sync_standby.py).
    sync_standby: bool = False

    def log_path(self, label: str) -> Path:
        """A worker's output file, kept for post-mortems of a failed run."""
        slug = "".join(char if char.isalnum() else "-" for char in label.lower()).strip("-")
        return self.log_dir / f"{slug}.log"

    async def reset(self) -> None:
        """Every measurement starts from an empty database (a private one unless --redis-url)."""
        await self.redis.flushdb()

    def section(self, name: str, heading: str, tables: list[Table], notes: list[str]) -> Section:
        """A benchmark's results, stamped with this run's command, date and machine."""
        return Section(
            name=name,
            heading=heading,
            command=self.command,
            date=time.strftime("%Y-%m-%d %H:%M %Z"),
            machine=self.machine,
            tables=tables,
            notes=notes,
        )

    def progress(self, message: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')} {message}[/dim]", highlight=False)
