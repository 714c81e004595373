"""Analytics against real PostgreSQL, Redis, uvicorn and an arq worker: events in, counts
out, exports as CSV in storage."""

import csv
import io
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from pipelines.analytics.aggregate import aggregate
from pipelines.analytics.export import EXPORT_PIPELINE
from service.databases.database import Database
from service.storage import open_storage
from testkit.service import client, running_worker, wait_for_job

PROBLEM = "application/problem+json"
DAY = datetime.now(UTC).date() - timedelta(days=200)  # well outside the default 30 days


def at(day: date, hour: int = 12) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


async def _events_of(database_url: str, tenant_id) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT xmin::text AS xmin, type, user_id, properties::text AS properties, ts FROM events "
            "WHERE tenant_id = $1 ORDER BY id",
            tenant_id,
        )
    finally:
        await conn.close()


async def _aggregate(settings, first_day: date, last_day: date) -> dict:
    db = Database(settings)
    await db.open()
    try:
        return await aggregate(db, first_day, last_day)
    finally:
        await db.close()


async def _counts(database_url: str) -> list[tuple]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tenant_id, type, day, count FROM event_counts ORDER BY 1, 2, 3")
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


async def test_a_batch_is_stored_in_one_statement(api, database_url, tenant):
    tenant_id, key = tenant
    events = [
        {"type": "page_view", "user_id": f"u{n}", "properties": {"path": f"/p/{n}"}, "ts": at(DAY)} for n in range(500)
    ] + [{"type": "signup"}]
    before = datetime.now(UTC)
    async with client(api.url, key) as http:
        response = await http.post("/v1/events", json={"events": events})
    assert response.status_code == 202
    assert response.json() == {"accepted": 501}
    rows = await _events_of(database_url, tenant_id)
    assert len(rows) == 501
    assert len({row["xmin"] for row in rows}) == 1  # one transaction wrote them all
    assert rows[7]["user_id"] == "u7" and rows[7]["properties"] == '{"path": "/p/7"}'
    assert rows[0]["ts"] == datetime.fromisoformat(at(DAY))
    assert rows[-1]["type"] == "signup" and rows[-1]["ts"] >= before  # ts defaults to when received


async def test_a_retried_batch_with_its_idempotency_key_is_stored_once(api, database_url, tenant):
    tenant_id, key = tenant
    batch = {"events": [{"type": "retried", "user_id": "u1", "ts": at(DAY)}, {"type": "retried", "ts": at(DAY)}]}
    async with client(api.url, key) as http:
        first = await http.post("/v1/events", json=batch, headers={"Idempotency-Key": "batch-7"})
        again = await http.post("/v1/events", json=batch, headers={"Idempotency-Key": "batch-7"})
        other = await http.post(
            "/v1/events", json={"events": [{"type": "other"}]}, headers={"Idempotency-Key": "batch-7"}
        )
        as_a_document = await http.post(
            "/v1/documents",
            files={"file": ("a.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")},
            headers={"Idempotency-Key": "batch-7"},
        )
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"accepted": 2}
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert other.status_code == as_a_document.status_code == 422
    assert other.json()["type"].endswith("/idempotency-mismatch")
    assert [row["type"] for row in await _events_of(database_url, tenant_id)].count("retried") == 2


@pytest.mark.parametrize(
    "events, status, field",
    [
        ([{"type": "x"}] * 1001, 422, "events"),
        ([], 422, "events"),
        ([{"type": "x"}, {"type": "y", "ts": "2026-03-01T12:00:00"}], 422, "events[1].ts"),
        ([{"type": "x", "ts": "yesterday"}], 422, "events[0].ts"),
        ([{"type": "x", "ts": 1767225600}], 422, "events[0].ts"),
        ([{"type": "x"}] * 3 + [{"type": ""}], 422, "events[3].type"),
        ([{"type": "x", "properties": {"blob": "a" * 9000}}], 422, "events[0].properties"),
        ([{"type": "x", "properties": [1]}], 422, "events[0].properties"),
        ([{"type": "x", "colour": "red"}], 422, "events[0].colour"),
        ([{"type": "x", "ts": "2999-01-01T00:00:00Z"}], 422, "events[0].ts"),
    ],
)
async def test_invalid_batches_name_the_field_and_store_nothing(api, database_url, tenant, events, status, field):
    tenant_id, key = tenant
    async with client(api.url, key) as http:
        response = await http.post("/v1/events", json={"events": events})
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["field"] == field and body["detail"].startswith(f"{field}: ")
    assert await _events_of(database_url, tenant_id) == []


async def test_bodies_that_are_not_json_batches(api, tenant):
    async with client(api.url, tenant[1]) as http:
        broken = await http.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
        form = await http.post("/v1/events", data={"events": "[]"})
        huge = await http.post(
            "/v1/events", content=b"[" + b" " * 10_000_000 + b"]", headers={"content-type": "application/json"}
        )
        anonymous = await http.post("/v1/events", json={"events": [{"type": "x"}]}, headers={"authorization": ""})
    assert broken.status_code == 400 and broken.headers["content-type"] == PROBLEM
    assert form.status_code == 415
    assert huge.status_code == 413
    assert anonymous.status_code == 401


async def test_aggregation_is_idempotent_and_exact(api, settings, database_url, tenant):
    tenant_id, key = tenant
    days = [DAY + timedelta(days=offset) for offset in range(3)]
    events = (
        [{"type": "view", "ts": at(days[0], hour)} for hour in range(5)]
        + [{"type": "view", "ts": at(days[1])}] * 2
        + [{"type": "click", "ts": at(days[1], 23)}]
        + [{"type": "click", "ts": at(days[2], 0)}]
    )
    async with client(api.url, key) as http:
        assert (await http.post("/v1/events", json={"events": events})).status_code == 202
    first = await _aggregate(settings, days[0], days[2])
    after_first = await _counts(database_url)
    second = await _aggregate(settings, days[0], days[2])
    assert await _counts(database_url) == after_first
    assert second["written"] == 0 and second["removed"] == 0 and first["written"] >= 4
    mine = {(kind, day): count for tenant, kind, day, count in after_first if tenant == tenant_id}
    assert mine == {("view", days[0]): 5, ("view", days[1]): 2, ("click", days[1]): 1, ("click", days[2]): 1}

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM events WHERE tenant_id = $1 AND type = 'click'", tenant_id)
    finally:
        await conn.close()
    await _aggregate(settings, days[1], days[1])  # a window: only day 2 is recomputed
    mine = {(kind, day): count for tenant, kind, day, count in await _counts(database_url) if tenant == tenant_id}
    assert mine == {("view", days[0]): 5, ("view", days[1]): 2, ("click", days[2]): 1}


async def test_stats_filter_by_range_and_type(api, settings, tenant):
    _, key = tenant
    first, second = DAY + timedelta(days=10), DAY + timedelta(days=11)
    events = [{"type": "view", "ts": at(first)}] * 3 + [{"type": "buy", "ts": at(second)}] * 2
    async with client(api.url, key) as http:
        await http.post("/v1/events", json={"events": events})
        await _aggregate(settings, first, second)
        both = (await http.get("/v1/stats", params={"from": first.isoformat(), "to": second.isoformat()})).json()
        buys = (
            await http.get("/v1/stats", params={"from": first.isoformat(), "to": second.isoformat(), "type": "buy"})
        ).json()
        one_day = (await http.get("/v1/stats", params={"from": first.isoformat(), "to": first.isoformat()})).json()
        default = await http.get("/v1/stats")
        backwards = await http.get("/v1/stats", params={"from": second.isoformat(), "to": first.isoformat()})
        too_long = await http.get("/v1/stats", params={"from": "2025-01-01", "to": "2026-01-02"})
        not_a_day = await http.get("/v1/stats", params={"from": "2026-3-1"})
        year_one = await http.get("/v1/stats", params={"to": "0001-01-02"})  # no 30 days before it
        year_one_backwards = await http.get("/v1/stats", params={"from": "2000-01-01", "to": "0001-01-01"})
    assert both.pop("next_aggregation_at")  # its value: tests/test_cli_ops.py
    assert both == {
        "from": first.isoformat(),
        "to": second.isoformat(),
        "items": [
            {"day": first.isoformat(), "type": "view", "count": 3},
            {"day": second.isoformat(), "type": "buy", "count": 2},
        ],
    }
    assert buys["items"] == [{"day": second.isoformat(), "type": "buy", "count": 2}]
    assert one_day["items"] == [{"day": first.isoformat(), "type": "view", "count": 3}]
    assert default.status_code == 200 and default.json()["items"] == []  # DAY is not in the last 30 days
    assert year_one.status_code == 200 and year_one.json()["from"] == "0001-01-01"
    for response in (backwards, too_long, not_a_day, year_one_backwards):
        assert response.status_code == 400 and response.headers["content-type"] == PROBLEM


async def _export(http, dataset: str, first: date, last: date) -> dict:
    response = await http.post(
        "/v1/exports", json={"dataset": dataset, "from": first.isoformat(), "to": last.isoformat()}
    )
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "export"
    return await wait_for_job(http, response.json()["id"], timeout=30)


async def _download(http, url: str) -> bytes:
    """A result file through the URL the job view gives (served by the API on file storage)."""
    response = await http.get(url)
    assert response.status_code == 200, response.text
    return response.content


async def _csv(http, url: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO((await _download(http, url)).decode())))


async def test_exports_stream_csv_to_storage(api, settings, tenant, monkeypatch):
    import pipelines.analytics.export as export

    monkeypatch.setattr(export, "FLUSH_ROWS", 7)  # several flushes, and a partial last one
    tenant_id, key = tenant
    first, last = DAY + timedelta(days=20), DAY + timedelta(days=21)
    events = (
        [{"type": "view", "user_id": f"u{n}", "properties": {"n": n}, "ts": at(first, n % 24)} for n in range(40)]
        + [{"type": "buy", "ts": at(last, 23)}]
        + [{"type": "outside", "ts": at(last + timedelta(days=1), 0)}]
    )
    async with client(api.url, key) as http, running_worker(settings, [EXPORT_PIPELINE]):
        await http.post("/v1/events", json={"events": events})
        await _aggregate(settings, first, last)
        done = await _export(http, "events", first, last)
        stats = await _export(http, "stats", first, last)
        jobs = await _export(http, "jobs", first, datetime.now(UTC).date())
        assert done["status"] == "succeeded", done
        result = done["result"]
        assert "key" not in result and result["url"].endswith(f"/v1/jobs/{done['id']}/files/{done['id']}.csv")
        assert result["rows"] == 41 and result["name"] == f"events-{first}-{last}.csv"
        saved_as = (await http.get(result["url"])).headers.get("content-disposition")
        assert saved_as == f'attachment; filename="events-{first}-{last}.csv"'
        rows = await _csv(http, result["url"])
        assert len(rows) == 41 and result["bytes"] == len(await _download(http, result["url"]))
        stats_rows = await _csv(http, stats["result"]["url"])
        exported_jobs = await _csv(http, jobs["result"]["url"])
    stored = open_storage(settings.storage_url).path(f"tenants/{tenant_id}/exports/{done['id']}.csv")
    assert stored.exists()
    assert list(rows[0]) == ["ts", "type", "user_id", "properties", "received_at"]
    assert rows[0]["type"] == "view" and rows[0]["properties"] in ('{"n": 0}', '{"n": 24}')
    assert [row["ts"] for row in rows] == sorted(row["ts"] for row in rows)
    assert rows[-1]["type"] == "buy"
    assert stats_rows == [
        {"day": first.isoformat(), "type": "view", "count": "40"},
        {"day": last.isoformat(), "type": "buy", "count": "1"},
    ]
    assert {row["id"] for row in exported_jobs} >= {done["id"], stats["id"]}
    assert {row["kind"] for row in exported_jobs} == {"export"}


async def test_export_requests_are_checked(api, tenant):
    async with client(api.url, tenant[1]) as http:
        unknown = await http.post("/v1/exports", json={"dataset": "secrets", "from": "2026-01-01", "to": "2026-01-02"})
        backwards = await http.post("/v1/exports", json={"dataset": "events", "from": "2026-01-02", "to": "2026-01-01"})
        too_long = await http.post("/v1/exports", json={"dataset": "jobs", "from": "2024-01-01", "to": "2026-01-01"})
        body = {"dataset": "stats", "from": "2026-01-01", "to": "2026-01-31"}
        first = await http.post("/v1/exports", json=body, headers={"Idempotency-Key": "export-1"})
        again = await http.post("/v1/exports", json=body, headers={"Idempotency-Key": "export-1"})
        other = await http.post(
            "/v1/exports", json={**body, "to": "2026-01-30"}, headers={"Idempotency-Key": "export-1"}
        )
    assert unknown.status_code == 422 and unknown.json()["field"] == "dataset"
    assert backwards.status_code == 422 and backwards.json()["field"] == "to"
    assert too_long.status_code == 422
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    assert other.status_code == 422


async def test_openapi_documents_the_new_paths(api):
    async with client(api.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/events",
        "/v1/stats",
        "/v1/exports",
        "/v1/reminders",
        "/v1/reminders/{reminder_id}",
        "/v1/memberships/{member}",
    ):
        assert path in paths
