"""Liveness (cheap: the process answers) and readiness (its dependencies answer).

/readyz fails (503) only for what the API cannot work without: the primary database,
Redis and storage. Anonymous callers get each check's status (pass, warn, fail) and
nothing else; the details (addresses, errors, lag, worker counts) need the admin key
(`Authorization: Bearer <ADMIN_KEY>`), since hosts and error texts help an attacker. A replica down or lagging is `warn` (reads go to the primary). So
is having no worker with a fresh heartbeat: the API still accepts jobs durably and they
run once a worker is back, so taking the API out of a load balancer would only turn
accepted work into refused work; the warning is for the operator. Likewise a program
the pipelines run (ffmpeg, ffprobe, tesseract) missing on this host: `warn`, naming how
to install it; only the jobs that need it fail.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from pipelines.system_tools import probe_tools
from service.api.auth import holds_admin_key
from service.errors import DependencyUnavailable
from service.telemetry import monitoring

HEALTH_JSON = "application/health+json"
CHECK_TIMEOUT = 2.0


async def livez(request: Request) -> JSONResponse:
    return JSONResponse({"status": "pass"}, media_type=HEALTH_JSON)


async def _redis(request: Request) -> dict:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await request.app.state.redis.ping()
        return {"status": "pass"}
    except Exception as exc:  # any failure means "not ready", whatever its type
        return {"status": "fail", "output": type(exc).__name__}


async def _storage(request: Request) -> dict:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await request.app.state.storage.check()
        return {"status": "pass"}
    except (TimeoutError, DependencyUnavailable, OSError) as exc:
        return {"status": "fail", "output": str(exc) or type(exc).__name__}


async def _workers(request: Request) -> dict:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            workers = await monitoring.live_workers(request.app.state.redis)
    except (TimeoutError, RedisError, OSError) as exc:  # Redis down: failed by its own check
        return {"status": "warn", "output": f"worker heartbeats unreadable ({type(exc).__name__})"}
    if not workers:
        return {
            "status": "warn",
            "observedValue": 0,
            "output": "no worker has a fresh heartbeat: jobs are accepted but wait for one",
        }
    return {
        "status": "pass",
        "observedValue": len(workers),
        "observedUnit": "workers",
        "time": datetime.fromtimestamp(max(worker["seen_at"] for worker in workers), UTC).isoformat(),
    }


async def _databases(request: Request) -> list[dict]:
    results = []
    for database in await request.app.state.db.check():
        fatal = database["role"] == "primary"
        if database.get("reachable") and not database.get("lagging"):
            status = "pass"
        else:
            status = "fail" if fatal else "warn"
        results.append({"status": status, **database})
    return results


def _statuses_only(checks: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """What anonymous callers see of the checks: each one's status."""
    return {name: [{"status": entry["status"]} for entry in entries] for name, entries in checks.items()}


async def readyz(request: Request) -> JSONResponse:
    databases, redis, storage, workers, tools = await asyncio.gather(
        _databases(request),
        _redis(request),
        _storage(request),
        _workers(request),
        asyncio.to_thread(probe_tools),  # probed once per process, then cached
    )
    checks = {
        "database": databases,
        "redis": [redis],
        "storage": [storage],
        "workers": [workers],
        "tools": [{"componentId": name, **check} for name, check in tools.items()],
    }
    statuses = {check["status"] for entries in checks.values() for check in entries}
    overall = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    headers = {"Retry-After": "5"} if overall == "fail" else {}
    if not holds_admin_key(request):
        checks = _statuses_only(checks)
    return JSONResponse(
        {"status": overall, "checks": checks},
        status_code=503 if overall == "fail" else 200,
        media_type=HEALTH_JSON,
        headers=headers,
    )


_HEALTH = {"description": "Health", "content": {HEALTH_JSON: {"schema": {"$ref": "#/components/schemas/Health"}}}}
OPENAPI_PATHS = {
    "/livez": {"get": {"summary": "The process answers", "security": [], "responses": {"200": _HEALTH}}},
    "/readyz": {
        "get": {
            "summary": "Primary, replicas, Redis and storage answer; a worker heartbeat is fresh and ffmpeg, ffprobe and tesseract are installed (warn if not)",
            "description": "Anonymous callers get each check's status only; the details need the admin key.",
            "security": [],
            "responses": {"200": _HEALTH, "503": _HEALTH},
        }
    },
}
