"""What an export hands a tenant: text a spreadsheet will not run as a formula, and no
number that grows with other tenants' activity. Real events through the API, a real
export job, the CSV fetched back through the API."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.analytics.export import EXPORT_PIPELINE
from testkit.service import client, new_tenant, running_worker
from tests.test_analytics import _csv, _export

FORMULAS = [
    '=HYPERLINK("https://evil.example","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    "=cmd|' /C calc'!A0",
]


async def test_cells_that_a_spreadsheet_would_evaluate_are_exported_as_text(api, settings, tenant):
    today = datetime.now(UTC).date()
    events = [{"type": formula, "user_id": formula, "properties": {"note": formula}} for formula in FORMULAS]
    events.append({"type": "plain", "user_id": "ada", "properties": {"n": -1}})
    async with client(api.url, tenant[1]) as http, running_worker(settings, [EXPORT_PIPELINE]):
        assert (await http.post("/v1/events", json={"events": events})).status_code == 202
        done = await _export(http, "events", today, today)
        assert done["status"] == "succeeded", done
        rows = await _csv(http, done["result"]["url"])
    by_type = {row["type"]: row for row in rows}
    for formula in FORMULAS:
        row = by_type["'" + formula]
        assert row["user_id"] == "'" + formula
        assert row["properties"].startswith("{")  # JSON text: it cannot start a formula
    assert by_type["plain"]["user_id"] == "ada"  # other text is left as it is
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


async def test_an_export_does_not_reveal_how_many_events_other_tenants_send(api, settings, tenant):
    """Tenant A exports its two events, with tenant B's 200 sent between them; then B sends
    200 more and A exports again. No column of A's export may move with B's volume."""
    _, other_key = await new_tenant(settings)
    today = datetime.now(UTC).date()
    noise = {"events": [{"type": "noise"} for _ in range(200)]}
    async with (
        client(api.url, tenant[1]) as mine,
        client(api.url, other_key) as theirs,
        running_worker(settings, [EXPORT_PIPELINE]),
    ):
        assert (await mine.post("/v1/events", json={"events": [{"type": "first"}]})).status_code == 202
        assert (await theirs.post("/v1/events", json=noise)).status_code == 202
        assert (await mine.post("/v1/events", json={"events": [{"type": "second"}]})).status_code == 202
        before = await _csv(mine, (await _export(mine, "events", today, today))["result"]["url"])
        assert (await theirs.post("/v1/events", json=noise)).status_code == 202
        after = await _csv(mine, (await _export(mine, "events", today, today))["result"]["url"])
    assert [row["type"] for row in before] == ["first", "second"]
    assert after == before  # the same rows, cell for cell, whatever B did in between
    for column in before[0]:
        values = [row[column] for row in before]
        if all(value.lstrip("-").isdigit() for value in values):  # a counter would show B's 200 here
            assert abs(int(values[1]) - int(values[0])) < 200, (column, values)
