"""Schemathesis against the live API (uvicorn in a subprocess), every documented operation:
no 5xx, and every answer matches /openapi.json (status, content type, schema)."""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from testkit.processes import ApiProcess, settings_env
from testkit.service import new_tenant

pytestmark = pytest.mark.timeout(180)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_api(database_url, redis_server, tmp_path_factory):
    from testkit.service import make_settings

    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path_factory.mktemp("fuzz") / "storage",
        queue_name="fuzz",
        rate_limit_per_minute=100_000,
    )
    _, key = asyncio.run(new_tenant(settings))
    api = ApiProcess(settings_env(settings), tmp_path_factory.mktemp("fuzz-logs") / "api.log").start()
    yield api, key
    api.stop()


def test_every_operation_answers_as_documented(live_api):
    api, key = live_api
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    seen: dict[str, set[int]] = {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            response = case.call_and_validate(base_url=api.url, headers=headers, checks=CHECKS, timeout=30)
            seen.setdefault(operation.label, set()).add(response.status_code)  # noqa: B023 (run at once, below)

        fuzz()
    assert set(seen) == {operation.label for operation in operations}
    statuses = set().union(*seen.values())
    assert any(200 <= status < 300 for status in statuses) and any(400 <= status < 500 for status in statuses)
