"""The machine a run happened on, stated next to every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import psutil
import redis.asyncio as aredis

PEER_PACKAGES = ("arq", "saq", "streaq", "celery", "rq")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def host() -> dict[str, str]:
    """The machine itself, label → value in display order (for benchmarks without Redis)."""
    return {
        "CPU": f"{psutil.cpu_count(logical=True)} logical cores, {_cpu_model()}",
        "Memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
    }


async def describe(redis: aredis.Redis) -> dict[str, str]:
    """Label → value, in display order."""
    server = await redis.info("server")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in PEER_PACKAGES)
    return {
        **host(),
        "Redis": f"{server['redis_version']} (private server, loopback)",
        "Peers": versions,
        "Load average at start (1/5/15 min)": load_average(),
    }
