"""Input a client may send that the API must refuse with a clear 4xx, never a 500:
JSON Python accepts but JSON does not (NaN, Infinity), numbers that overflow, nesting
as deep as the body allows, instants Python cannot hold in UTC, hosts IDNA refuses,
and destinations (callbacks, reminders) that must be judged when they are submitted.
The real API over HTTP, against PostgreSQL and Redis."""

from __future__ import annotations

import json
import subprocess
from datetime import date

import pytest

from pipelines.analytics.export import EXPORT_PIPELINE
from testkit.files import multipart_file, text_pdf
from testkit.service import client, running_worker, wait_for_job

PROBLEM = "application/problem+json"
HOOK = {"channel": "webhook", "to": "https://example.com/hook", "template": "order.paid"}
REMINDER = {
    "due_at": "2030-01-01T09:00:00Z",
    "channel": "webhook",
    "to": "https://example.com/hook",
    "template": "order.paid",
}
BIDI_HOST = "https://exa\u202emple.com/hook"  # RIGHT-TO-LEFT OVERRIDE: shows as "https://exaelpm.com"
YEAR_ONE_EAST = "0001-01-01T00:00:00+14:00"  # before 0001-01-01 in UTC
YEAR_9999_WEST = "9999-12-31T23:59:59-14:00"  # in year 10000 in UTC


def assert_refused(response, statuses=(400, 422), field: str | None = None) -> dict:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    if field is not None:
        assert problem["field"] == field, problem
    return problem


def raw(value: dict, **replacements: str) -> bytes:
    """`value` as JSON, with each placeholder string replaced by raw (non-JSON) text."""
    text = json.dumps(value)
    for placeholder, literal in replacements.items():
        text = text.replace(json.dumps(placeholder), literal)
    return text.encode()


NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999999", "-1e999999", "1" * 5000]
JSON_BODIES = [
    *[("/v1/notifications", raw({**HOOK, "data": {"x": "N"}}, N=n)) for n in NOT_JSON_NUMBERS],
    *[("/v1/events", raw({"events": [{"type": "t", "properties": {"x": "N"}}]}, N=n)) for n in NOT_JSON_NUMBERS],
    *[("/v1/reminders", raw({**REMINDER, "data": {"x": "N"}}, N=n)) for n in NOT_JSON_NUMBERS],
    ("/v1/notifications", b"[" * 100_000),
    ("/v1/events", b"[" * 100_000),
    ("/v1/exports", b"[" * 4000),
    ("/v1/reminders", b"[" * 60_000),
    ("/v1/notifications", raw({**HOOK, "data": {"x": "N"}}, N="[" * 900 + "]" * 900)),
    ("/v1/events", raw({"events": [{"type": "t", "properties": {"x": "N"}}]}, N="[" * 150 + "]" * 150)),
]


@pytest.mark.parametrize(("path", "body"), JSON_BODIES, ids=lambda value: str(value)[:40])
async def test_json_outside_rfc_8259_or_nested_deeply_is_a_4xx(api, tenant, path, body):
    async with client(api.url, tenant[1]) as http:
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
        listed = (await http.get("/v1/jobs")).json()["items"]
    assert_refused(response)
    assert listed == []


async def test_the_refusal_names_the_field(api, tenant):
    async with client(api.url, tenant[1]) as http:
        events = await http.post(
            "/v1/events",
            content=raw({"events": [{"type": "t", "properties": {"x": "N"}}]}, N="1e999999"),
            headers={"content-type": "application/json"},
        )
        hook = await http.post(
            "/v1/notifications",
            content=raw({**HOOK, "data": {"a": ["N"]}}, N="-1e999999"),
            headers={"content-type": "application/json"},
        )
    assert "finite" in assert_refused(events, (422,), field="events[0].properties.x")["detail"]
    assert_refused(hook, (422,), field="data.a[0]")


async def test_a_field_named_with_a_lone_surrogate_is_named_escaped_in_the_422(api, tenant):
    async with client(api.url, tenant[1]) as http:
        response = await http.post(
            "/v1/notifications",
            content=json.dumps({**HOOK, "to": {"\ud800": ["\x00"]}}).encode(),  # valid JSON, not storable
            headers={"content-type": "application/json"},
        )
    assert assert_refused(response, (422,), field="to.\\ud800[0]")["detail"].startswith("to.\\ud800[0]: ")


@pytest.mark.parametrize("metadata", ["[" * 15_000, '{"a": NaN}', '{"a": 1e999999}', '{"a": ' * 200 + "1" + "}" * 200])
async def test_multipart_metadata_outside_json_is_a_422(api, tenant, metadata):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/documents", files=multipart_file(text_pdf()), data={"metadata": metadata})
    assert assert_refused(response, (422,))["field"].partition(".")[0] == "metadata"


@pytest.mark.parametrize("moment", [YEAR_ONE_EAST, YEAR_9999_WEST])
async def test_instants_outside_utc_years_1_to_9999_are_a_422(api, tenant, moment):
    async with client(api.url, tenant[1]) as http:
        event = await http.post("/v1/events", json={"events": [{"type": "t", "ts": moment}]})
        reminder = await http.post("/v1/reminders", json={**REMINDER, "due_at": moment})
        notification = await http.post("/v1/notifications", json={**HOOK, "send_at": moment})
        membership = await http.put(
            "/v1/memberships/m-1", json={"email": "a@example.com", "expires_at": moment, "data": {"name": "A"}}
        )
    assert_refused(event, (422,), field="events[0].ts")
    assert_refused(reminder, (422,), field="due_at")
    assert_refused(notification, (422,), field="send_at")
    assert_refused(membership, (422,), field="expires_at")


async def test_exports_at_the_ends_of_the_calendar(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, [EXPORT_PIPELINE]):
        first = await http.post("/v1/exports", json={"dataset": "events", "from": "0001-01-01", "to": "0001-01-31"})
        last = await http.post("/v1/exports", json={"dataset": "events", "from": "9999-12-30", "to": "9999-12-31"})
        stats = await http.get("/v1/stats", params={"from": "0001-01-01", "to": "0001-01-02"})
        assert first.status_code == 202, first.text
        done = await wait_for_job(http, first.json()["id"], timeout=30)
    assert done["status"] == "succeeded" and done["result"]["rows"] == 0, done
    assert_refused(last, (422,), field="to")
    assert stats.status_code == 200 and stats.json()["from"] == date(1, 1, 1).isoformat()


async def test_hosts_idna_refuses_are_invalid_urls(api, tenant):
    async with client(api.url, tenant[1]) as http:
        hook = await http.post("/v1/notifications", json={**HOOK, "to": BIDI_HOST})
        hooks = await http.post("/v1/notifications", json={**HOOK, "to": ["https://example.com/", BIDI_HOST]})
        reminder = await http.post("/v1/reminders", json={**REMINDER, "to": BIDI_HOST})
        callback = await http.post("/v1/documents", files=multipart_file(text_pdf()), data={"callback_url": BIDI_HOST})
        unclosed = await http.post(
            "/v1/documents", files=multipart_file(text_pdf()), data={"callback_url": "http://[::1/x"}
        )
        empty_label = await http.post("/v1/notifications", json={**HOOK, "to": "https://a..example.com/"})
        long_label = await http.post("/v1/notifications", json={**HOOK, "to": f"https://{'a' * 64}.example.com/"})
        listed = (await http.get("/v1/jobs")).json()["items"]
    assert assert_refused(hook, (422,), field="to")["type"].endswith("/invalid-url")
    assert assert_refused(hooks, (422,), field="to[1]")["type"].endswith("/invalid-url")
    assert assert_refused(reminder, (422,), field="to[0]")["type"].endswith("/invalid-url")
    assert "U+202E" in assert_refused(callback, (422,), field="callback_url")["detail"]
    assert_refused(unclosed, (422,), field="callback_url")
    assert assert_refused(empty_label, (422,), field="to")["type"].endswith("/invalid-url")
    assert assert_refused(long_label, (422,), field="to")["type"].endswith("/invalid-url")
    assert listed == []


async def test_an_internationalised_host_is_accepted(api, tenant):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/notifications", json={**HOOK, "to": "https://bücher.example/hook"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/cb", "http://169.254.169.254/latest/meta-data", "http://[::1]/cb", "http://10.1.2.3/cb"]
)
async def test_a_callback_url_inside_our_network_is_refused_at_submission(api, tenant, url):
    async with client(api.url, tenant[1]) as http:
        document = await http.post("/v1/documents", files=multipart_file(text_pdf()), data={"callback_url": url})
        listed = (await http.get("/v1/jobs")).json()["items"]
    problem = assert_refused(document, (422,), field="callback_url")
    assert problem["type"].endswith("/destination-refused") and "CALLBACK_ALLOWED_HOSTS" in problem["detail"]
    assert listed == []


async def test_a_video_callback_url_inside_our_network_is_refused_at_submission(api, tenant, tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=5:duration=1",
            "-pix_fmt",
            "yuv420p",
            str(clip),
        ],
        check=True,
        timeout=60,
    )
    async with client(api.url, tenant[1]) as http:
        video = await http.post(
            "/v1/videos",
            files=multipart_file(clip.read_bytes(), "clip.mp4", "video/mp4"),
            data={"callback_url": "http://127.0.0.1:9/cb"},
        )
    assert_refused(video, (422,), field="callback_url")


async def test_reminders_are_refused_at_creation_as_notifications_are(api, tenant):
    async with client(api.url, tenant[1]) as http:
        private = await http.post(
            "/v1/reminders", json={**REMINDER, "to": ["https://example.com/", "http://127.0.0.1:9/"]}
        )
        metadata = await http.post("/v1/reminders", json={**REMINDER, "to": "http://169.254.169.254/latest"})
        sms = await http.post(
            "/v1/reminders",
            json={**REMINDER, "channel": "sms", "to": "+15551234567", "template": "welcome", "data": {"name": "A"}},
        )
        bad_phone = await http.post("/v1/reminders", json={**REMINDER, "channel": "webhook", "to": "+15551234567"})
    assert assert_refused(private, (422,), field="to[1]")["type"].endswith("/destination-refused")
    assert assert_refused(metadata, (422,), field="to[0]")["type"].endswith("/destination-refused")
    problem = assert_refused(sms, (422,), field="channel")
    assert problem["type"].endswith("/channel-not-configured") and "TWILIO_ACCOUNT_SID" in problem["detail"]
    assert_refused(bad_phone, (422,), field="to[0]")
