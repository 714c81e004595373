"""The dashboard's pages (Jinja2, server-rendered), its JSON feeds (polled every 2 s by
dashboard.js) and its actions. Everything it loads is served from here: no CDN."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from service import ledger
from service.api.dashboard import access, data, graph
from service.api.files import file_response, link_files
from service.api.problems import Problem
from service.api.routes import bulk, jobs
from service.ledger.views import job_view

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["to_second"] = data.to_second
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FILTER_CHARS = 100


def _filters(request: Request) -> dict:
    params = request.query_params
    status = params.get("status") or None
    if status is not None and status not in jobs.STATUSES:
        raise Problem(400, f"status must be one of {', '.join(jobs.STATUSES)}", type="bad-request")
    return {name: (params.get(name) or None) and params[name][:MAX_FILTER_CHARS] for name in ("kind", "tenant")} | {
        "status": status
    }


def _page(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=SECURITY_HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=303, headers=SECURITY_HEADERS)


async def login_page(request: Request) -> Response:
    access.admin_key(request)
    return _page(request, "login.html", {"failed": False})


async def login(request: Request) -> Response:
    async with request.form(max_files=0, max_fields=5) as form:
        candidate = str(form.get("key", ""))
    if not candidate or not access.key_matches(request, candidate):
        return _page(request, "login.html", {"failed": True}, status_code=401)
    response = RedirectResponse("/dashboard/", status_code=303, headers=SECURITY_HEADERS)
    await access.start_session(request, response)
    return response


async def logout(request: Request) -> Response:
    response = _to_login()
    await access.end_session(request, response)
    return response


async def logout_everywhere(request: Request) -> Response:
    if not await access.is_admin(request):
        return _to_login()
    response = _to_login()
    await access.end_all_sessions(request, response)
    return response


async def overview_page(request: Request) -> Response:
    if not await access.is_admin(request):
        return _to_login()
    return _page(
        request,
        "overview.html",
        {"data": await data.overview(request.app.state, **_filters(request)), "statuses": jobs.STATUSES},
    )


async def overview_json(request: Request) -> JSONResponse:
    await access.require_admin(request)
    return JSONResponse(await data.overview(request.app.state, **_filters(request)), headers=SECURITY_HEADERS)


async def _detail(request: Request) -> dict:
    """The job as the page shows it; its result's files linked as the API links them."""
    job = await data.job_detail(request.app.state, jobs.path_job_id(request))
    if job is None:
        raise jobs.not_found()
    return await link_files(request, job)


async def job_page(request: Request) -> Response:
    if not await access.is_admin(request):
        return _to_login()
    return _page(request, "job.html", {"job": await _detail(request)})


async def job_json(request: Request) -> JSONResponse:
    await access.require_admin(request)
    return JSONResponse(await _detail(request), headers=SECURITY_HEADERS)


async def job_file(request: Request) -> Response:
    """A file the job's result lists (a thumbnail, a rendition), for the admin's browser."""
    await access.require_admin(request)
    result = await data.job_result(request.app.state, jobs.path_job_id(request))
    response = await file_response(request, result, request.path_params["name"])
    response.headers.update(SECURITY_HEADERS)
    return response


async def _workflow(request: Request) -> dict:
    """The workflow as its page shows it, or 404."""
    workflow_id = ledger.parse_job_id(request.path_params["workflow_id"])
    workflow = await data.workflow_detail(request.app.state, workflow_id) if workflow_id else None
    if workflow is None:
        raise Problem(404, "no such workflow", type="not-found")
    return workflow


async def workflow_page(request: Request) -> Response:
    """The workflow's steps as a graph coloured by status (kept live by dashboard.js), and as a table."""
    if not await access.is_admin(request):
        return _to_login()
    workflow = await _workflow(request)
    drawn = graph.layout({step["name"]: step["after"] for step in workflow["steps"]})
    steps = {step["name"]: step for step in workflow["steps"]}
    return _page(request, "workflow.html", {"workflow": workflow, "graph": drawn, "steps": steps, "sizes": graph})


async def workflow_json(request: Request) -> JSONResponse:
    await access.require_admin(request)
    return JSONResponse(await _workflow(request), headers=SECURITY_HEADERS)


def _action(steer):
    async def act(request: Request) -> JSONResponse:
        await access.require_action(request)
        job_id = jobs.path_job_id(request)
        tenant_id = await data.job_tenant(request.app.state, job_id)
        if tenant_id is None:
            raise jobs.not_found()
        row = await steer(request.app.state, tenant_id, job_id)
        return JSONResponse(job_view(row), status_code=202, headers=SECURITY_HEADERS)

    return act


def _bulk(action: bulk.BulkAction, statuses: tuple[str, ...]):
    """`action` on every job in `statuses` the overview's filters (kind, tenant) match,
    tenant by tenant, as `POST /v1/jobs/retry|cancel` does for one tenant; with
    `?dry_run=1` it only counts: {matched, changed}."""

    async def act(request: Request) -> JSONResponse:
        await access.require_action(request)
        filters = _filters(request)
        where = ledger.JobFilter(statuses=statuses, kind=filters["kind"])
        dry_run = request.query_params.get("dry_run") == "1"
        matched = changed = 0
        for tenant_id in await data.tenant_ids(request.app.state, filters["tenant"]):
            if dry_run:
                matched += await data.count_jobs(request.app.state, tenant_id, where)
                continue
            counts = await bulk.act_on(request.app.state, tenant_id, action, where)
            matched, changed = matched + counts[0], changed + counts[1]
        return JSONResponse({"matched": matched, "changed": changed}, headers=SECURITY_HEADERS)

    return act


def mount() -> Mount:
    return Mount(
        "/dashboard",
        routes=[
            Route("/", overview_page, methods=["GET"]),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/logout-everywhere", logout_everywhere, methods=["POST"]),
            Route("/jobs/{job_id}", job_page, methods=["GET"]),
            Route("/jobs/{job_id}/files/{name}", job_file, methods=["GET"]),
            Route("/workflows/{workflow_id}", workflow_page, methods=["GET"]),
            Route("/api/overview", overview_json, methods=["GET"]),
            Route("/api/jobs/{job_id}", job_json, methods=["GET"]),
            Route("/api/workflows/{workflow_id}", workflow_json, methods=["GET"]),
            Route("/api/jobs/retry-failed", _bulk(bulk.RETRY, ("failed",)), methods=["POST"]),
            Route("/api/jobs/cancel-unfinished", _bulk(bulk.CANCEL, bulk.CANCEL.statuses), methods=["POST"]),
            Route("/api/jobs/{job_id}/retry", _action(jobs.retry), methods=["POST"]),
            Route("/api/jobs/{job_id}/cancel", _action(jobs.cancel), methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
    )
