"""The one mapping from the core's errors to problem+json, on a real HTTP exchange."""

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from service.api.problems import EXCEPTION_HANDLERS
from service.errors import DependencyUnavailable, PermanentError, TransientError

FAILURES = {
    "permanent": PermanentError("the file is not a PDF", type="unsupported_type"),
    "transient": TransientError("the provider is throttling", type="provider_unavailable", retry_after=7.2),
    "dependency": DependencyUnavailable("redis", "10.0.0.7:6379 refused the connection"),
    "bug": RuntimeError("secret at 0x7f00"),
}


async def fail(request):
    raise FAILURES[request.path_params["name"]]


async def answer(name: str) -> httpx.Response:
    app = Starlette(routes=[Route("/{name}", fail)], exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.test") as http:
        return await http.get(f"/{name}")


async def test_each_error_is_a_problem_with_its_status_and_type():
    expected = {
        "permanent": (422, "unsupported-type", None),
        "transient": (503, "provider-unavailable", "8"),
        "dependency": (503, "dependency-unavailable", "5"),
        "bug": (500, "internal-error", None),
    }
    for name, (status, type, retry_after) in expected.items():
        response = await answer(name)
        body = response.json()
        assert response.headers["content-type"] == "application/problem+json", name
        assert (response.status_code, body["type"].rsplit("/", 1)[-1]) == (status, type), (name, body)
        assert response.headers.get("retry-after") == retry_after, name
        assert "0x7f00" not in response.text and "10.0.0.7" not in response.text
