"""CPU seconds of the processes a benchmark measures, from the kernel's accounts (psutil).

A rate or a latency on a shared 2-core machine moves with whatever else ran; the CPU a job
costs each process moves far less, and says where the cores went.
"""

from __future__ import annotations

import contextlib

import asyncpg
import psutil


def _seconds(process: psutil.Process, *, own: bool, reaped: bool) -> float:
    """User and system seconds of `process` itself (`own`) and of the children it has
    waited for (`reaped`); 0 once it is gone."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:  # a PostgreSQL backend that just ended, say
        return 0.0
    return (times.user + times.system if own else 0.0) + (
        times.children_user + times.children_system if reaped else 0.0
    )


def own_cpu(process: psutil.Process) -> float:
    return _seconds(process, own=True, reaped=False)


def reaped_cpu(process: psutil.Process) -> float:
    return _seconds(process, own=False, reaped=True)


def child_cpu(parent: psutil.Process, apart: frozenset[int] = frozenset()) -> float:
    """CPU seconds of a process's descendants: those reaped, and the live ones (the worker's
    page readers' fork server and the readers it forked, the API's uvicorn workers, the
    PostgreSQL server's backends), but for the subtrees of the processes in `apart`.
    The process table is read once for the whole tree (once more for each subtree left
    out), not once a process: a benchmark reads it while it runs, on the cores it measures."""
    try:
        descendants = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    left_out: set[int] = set()
    for process in descendants:
        if process.pid in apart:
            left_out.add(process.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                left_out.update(child.pid for child in process.children(recursive=True))
    return reaped_cpu(parent) + sum(
        _seconds(process, own=True, reaped=True) for process in descendants if process.pid not in left_out
    )


def tree_cpu(process: psutil.Process, apart: frozenset[int] = frozenset()) -> float:
    """CPU seconds of `process` and its descendants (but for the subtrees in `apart`)."""
    return own_cpu(process) + child_cpu(process, apart)


async def postmaster(admin_url: str) -> psutil.Process:
    """The PostgreSQL server at `admin_url` (on this machine): the parent of the backend that
    answers a connection. Its descendants' CPU counts backends that ended during a run,
    which a sum over the live `postgres` processes would lose, and no other server's."""
    connection = await asyncpg.connect(admin_url)
    try:  # while the backend lives
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        server = psutil.Process(backend).parent()
    finally:
        await connection.close()
    if server is None:
        raise RuntimeError(f"the backend {backend} of {admin_url} has no parent on this machine")
    return server


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
    machine, NaN); a named process is counted once, under its own name, even when another
    one started it (the benchmark starts the worker and Redis)."""
    apart = frozenset(process.pid for process in processes.values() if process is not None)
    return {
        name: tree_cpu(process, apart) if process is not None else float("nan") for name, process in processes.items()
    }
