"""CPU seconds of the processes a benchmark measures, from the kernel's accounts (psutil).

A rate or a latency on a shared 2-core machine moves with whatever else ran; the CPU a job
costs each process moves far less, and says where the cores went.
"""

from __future__ import annotations

import psutil


def own_cpu(process: psutil.Process) -> float:
    """User and system seconds of `process` itself; 0 once it is gone."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:  # a PostgreSQL backend that just ended
        return 0.0
    return times.user + times.system


def child_cpu(parent: psutil.Process) -> float:
    """CPU seconds of a process's descendants: those reaped, and the live ones (the worker's
    page readers' fork server and the readers it forked, the API's uvicorn workers)."""
    own = parent.cpu_times()
    total = own.children_user + own.children_system
    for child in parent.children(recursive=True):
        times = child.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


def postgres_cpu() -> float:
    """Every PostgreSQL process on the machine: the benchmark's own server does the work,
    any other one idles."""
    return sum(
        own_cpu(process)
        for process in psutil.process_iter(["name"])
        if process.info["name"] == "postgres" and process.is_running()
    )


def listening_on(port: int) -> psutil.Process | None:
    """The process listening on TCP `port` of this machine, if any (and if this user may see it)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


def by_process(processes: dict[str, psutil.Process | None]) -> dict[str, float]:
    """CPU seconds so far of each named process with its descendants (None: not on this
    machine, NaN), and PostgreSQL's."""
    seconds = {
        name: own_cpu(process) + child_cpu(process) if process is not None else float("nan")
        for name, process in processes.items()
    }
    seconds["PostgreSQL"] = postgres_cpu()
    return seconds
