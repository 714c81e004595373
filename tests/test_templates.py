"""Tenants' own templates end to end: the real API, an in-process worker, PostgreSQL, Redis,
aiosmtpd, and the sandbox's child process."""

import uuid

import pytest

from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from service.templating import MAX_OUTPUT
from service.templating.sandbox import RENDER_TIMEOUT
from testkit.notifications import local_settings
from testkit.service import ApiServer, client, new_tenant, running_worker, wait_for_job
from testkit.twilio_server import TwilioServer
from tests.test_notifications_email import parts, plain_smtp  # noqa: F401 (fixture)
from tests.test_notifications_pipeline import channel_settings, phone
from tests.test_notifications_push import fcm  # noqa: F401 (fixture)

PIPELINES = (NOTIFICATION_PIPELINE, CALLBACK_PIPELINE)
RECEIPT = {
    "channel": "email",
    "subject": "Order {{ order_id }} is on its way",
    "text": "Hello {{ name }},\n{% for item in items %}- {{ item }}\n{% endfor %}",
    "html": "<p>Hello {{ name }}</p>",
}


@pytest.fixture(scope="module")
def twilio():
    server = TwilioServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(database_url, redis_server, tmp_path, plain_smtp, twilio, fcm):
    return local_settings(
        database_url, redis_server.url, tmp_path / "storage", **channel_settings(plain_smtp, twilio, fcm)
    )


def address(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def mail_to(mailbox, to: str) -> list:
    return [message for message in mailbox.messages if to in message["To"]]


def problem_of(response, status: int = 422) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    return {**problem, "type": problem["type"].rsplit("/", 1)[1]}


async def delivered(http, **body) -> dict:
    response = await http.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    done = await wait_for_job(http, response.json()["id"], timeout=30)
    assert done["status"] == "succeeded", done
    return done


async def test_put_get_list_replace_delete(api, tenant):
    async with client(api.url, tenant[1]) as http:
        created = await http.put("/v1/templates/receipt", json=RECEIPT)
        replaced = await http.put("/v1/templates/receipt", json={**RECEIPT, "subject": "Order {{ order_id }}"})
        one = await http.get("/v1/templates/receipt")
        listed = await http.get("/v1/templates")
        deleted = await http.delete("/v1/templates/receipt")
        gone = await http.get("/v1/templates/receipt")
        deleted_again = await http.delete("/v1/templates/receipt")
    assert created.status_code == 201 and created.headers["location"] == "/v1/templates/receipt"
    assert created.json()["variables"] == ["items", "name", "order_id"]
    assert replaced.status_code == 200 and replaced.json()["created_at"] == created.json()["created_at"]
    assert one.json()["subject"] == "Order {{ order_id }}" and one.json()["html"] == RECEIPT["html"]
    assert [item["name"] for item in listed.json()["items"]] == ["receipt"]
    assert deleted.status_code == 204
    assert problem_of(gone, 404)["type"] == problem_of(deleted_again, 404)["type"] == "not-found"


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"channel": "fax", "text": "x"}, "channel", "invalid-field"),
        ({"channel": "email", "text": "x"}, "subject", "invalid-field"),
        ({"channel": "sms", "text": "x", "html": "<p>x</p>"}, "html", "invalid-field"),
        ({"channel": "sms", "text": "x", "colour": "red"}, "colour", "invalid-field"),
    ],
)
async def test_invalid_bodies_are_422s_naming_the_field(api, tenant, body, field, kind):
    async with client(api.url, tenant[1]) as http:
        problem = problem_of(await http.put("/v1/templates/t", json=body))
    assert (problem["field"], problem["type"]) == (field, kind)


async def test_a_name_is_letters_digits_and_dot_dash_underscore(api, tenant):
    async with client(api.url, tenant[1]) as http:
        for name in ("abc%0A", "-abc", "a%20b", "x" * 101):
            problem = problem_of(await http.put(f"/v1/templates/{name}", json={"channel": "sms", "text": "x"}))
            assert problem["field"] == "name", name
        assert (
            await http.put("/v1/templates/Order.shipped_v-2", json={"channel": "sms", "text": "x"})
        ).status_code == 201


async def test_a_syntax_error_is_a_422_with_line_and_column(api, tenant):
    text = "Dear {{ name }},\n{% if vip %}Gold{% endfi %}"
    async with client(api.url, tenant[1]) as http:
        problem = problem_of(await http.put("/v1/templates/broken", json={"channel": "sms", "text": text}))
        unclosed = problem_of(
            await http.put("/v1/templates/broken", json={"channel": "email", "subject": "Hi {{ name", "text": "x"})
        )
        stored = await http.get("/v1/templates/broken")
    assert (problem["type"], problem["field"], problem["line"], problem["column"]) == ("template-syntax", "text", 2, 20)
    assert "endfi" in problem["detail"] and "line 2, column 20" in problem["detail"]
    assert (unclosed["field"], unclosed["line"], unclosed["column"]) == ("subject", 1, 7)
    assert stored.status_code == 404


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ self._TemplateReference__context }}",
        "{{ range['__self__'] }}",
    ],
)
async def test_a_template_naming_an_internal_is_refused(api, tenant, text):
    async with client(api.url, tenant[1]) as http:
        problem = problem_of(await http.put("/v1/templates/escape", json={"channel": "sms", "text": text}))
    assert (problem["type"], problem["field"]) == ("template-unsafe", "text")


async def test_what_the_sandbox_lets_through_is_harmless(api, tenant):
    """Reaching for internals through data, files or the server's settings renders nothing of them."""
    attempts = {
        "dynamic": ("{{ x[y] }}", {"x": "", "y": "__class__"}, "template-unsafe"),
        "mutation": ("{{ items.append(1) }}", {"items": []}, "template-unsafe"),
        "include": ('{% include "/etc/passwd" %}', {}, "template-error"),
        "import": ('{% import "os" as os %}{{ os }}', {}, "template-error"),
    }
    async with client(api.url, tenant[1]) as http:
        for name, (text, data, kind) in attempts.items():
            assert (await http.put(f"/v1/templates/{name}", json={"channel": "sms", "text": text})).status_code == 201
            problem = problem_of(await http.post(f"/v1/templates/{name}/preview", json={"data": data}))
            assert problem["type"] == kind, (name, problem)
            assert "root:" not in problem["detail"]
        settings_ = await http.put(
            "/v1/templates/settings", json={"channel": "sms", "text": "{{ settings }}{{ config }}"}
        )
        named = problem_of(await http.post("/v1/templates/settings/preview", json={"data": {}}))
    assert settings_.json()["variables"] == ["config", "settings"]  # only ever the caller's own data
    assert named["missing"] == ["config", "settings"] and "'config', 'settings'" in named["detail"]


async def test_output_memory_and_time_are_bounded(api, tenant):
    bombs = {
        "long": ('{% for i in range(100000) %}{{ "0123456789" }}{% endfor %}', "template-too-large"),
        "huge": ('{{ "x" * 1000000000 }}', "template-too-large"),
        "folded": ('{{ "x"|center(1000000000) }}', "template-too-large"),
        "endless": (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "template-too-slow",
        ),
    }
    async with client(api.url, tenant[1]) as http:
        for name, (text, kind) in bombs.items():
            assert (await http.put(f"/v1/templates/{name}", json={"channel": "sms", "text": text})).status_code == 201
            problem = problem_of(await http.post(f"/v1/templates/{name}/preview", json={"data": {}}))
            assert problem["type"] == kind, (name, problem)
        assert str(MAX_OUTPUT) in problem_of(await http.post("/v1/templates/long/preview", json={}))["detail"]
        await http.put("/v1/templates/fine", json={"channel": "sms", "text": "Hi {{ name }}"})
        after = await http.post("/v1/templates/fine/preview", json={"data": {"name": "Ada"}})
    assert f"{RENDER_TIMEOUT:g} s" in problem["detail"]
    assert after.json() == {"subject": None, "text": "Hi Ada", "html": None}  # the killed child was replaced


async def test_preview_renders_every_part_and_names_a_missing_variable(api, tenant):
    data = {"order_id": "A-1", "name": "<Ada>", "items": ["tea", "cake"], "unused": True}
    async with client(api.url, tenant[1]) as http:
        await http.put("/v1/templates/receipt", json=RECEIPT)
        preview = await http.post("/v1/templates/receipt/preview", json={"data": data})
        lacking = problem_of(await http.post("/v1/templates/receipt/preview", json={"data": {"name": "Ada"}}))
        builtin = await http.post("/v1/templates/welcome/preview", json={"data": {"name": "Ada", "extra": 1}})
        unknown = await http.post("/v1/templates/nothing/preview", json={"data": {}})
    assert preview.json() == {
        "subject": "Order A-1 is on its way",
        "text": "Hello <Ada>,\n- tea\n- cake\n",
        "html": "<p>Hello &lt;Ada&gt;</p>",
    }
    assert (lacking["field"], lacking["type"], lacking["missing"]) == (
        "data",
        "invalid-template-data",
        ["items", "order_id"],
    )
    assert "'items', 'order_id'" in lacking["detail"]
    assert builtin.json()["subject"] == "Welcome, Ada" and "Ada" in builtin.json()["html"]
    assert problem_of(unknown, 404)["type"] == "not-found"


async def test_submitting_checks_the_named_template_and_every_recipients_data(api, tenant):
    async with client(api.url, tenant[1]) as http:
        await http.put("/v1/templates/receipt", json=RECEIPT)
        base = {"channel": "email", "template": "receipt"}
        lacking = problem_of(await http.post("/v1/notifications", json={**base, "to": "a@example.com", "data": {}}))
        one_lacks = problem_of(
            await http.post(
                "/v1/notifications",
                json={
                    **base,
                    "to": [{"to": "a@example.com", "data": {"name": "Ada"}}, {"to": "g@example.com", "data": {}}],
                    "data": {"order_id": "A-1", "items": []},
                },
            )
        )
        await http.put("/v1/templates/short", json={"channel": "sms", "text": "Hi"})
        wrong_channel = problem_of(
            await http.post("/v1/notifications", json={**base, "template": "short", "to": "a@example.com"})
        )
        bad_recipient = problem_of(
            await http.post("/v1/notifications", json={**base, "to": [{"to": "nope"}], "data": {}})
        )
        extra = await http.post(
            "/v1/notifications",
            json={"channel": "email", "to": "a@example.com", "template": "welcome", "data": {"name": "A", "plan": 1}},
        )
    assert (lacking["field"], lacking["type"]) == ("data", "invalid-template-data")
    assert "'items', 'name', 'order_id'" in lacking["detail"]
    assert (one_lacks["field"], one_lacks["type"]) == ("to[1].data", "invalid-template-data")
    assert "'name'" in one_lacks["detail"]
    assert (wrong_channel["field"], wrong_channel["type"]) == ("template", "template-channel")
    assert (bad_recipient["field"], bad_recipient["type"]) == ("to[0].to", "invalid-recipient")
    assert extra.status_code == 202, extra.text


async def test_a_tenants_template_is_its_own_and_overrides_a_built_in_for_it_only(api, settings, tenant, plain_smtp):
    other = await new_tenant(settings)
    mine, theirs = address("mine"), address("theirs")
    welcome = {"channel": "email", "subject": "Hey {{ name }}, glad you came", "text": "Hi {{ name }}!\n"}
    async with (
        client(api.url, tenant[1]) as http,
        client(api.url, other[1]) as other_http,
        running_worker(settings, PIPELINES),
    ):
        await http.put("/v1/templates/welcome", json=welcome)
        await http.put("/v1/templates/receipt", json=RECEIPT)
        unseen = await other_http.get("/v1/templates/receipt")
        unlisted = await other_http.get("/v1/templates")
        unpreviewed = await other_http.post("/v1/templates/receipt/preview", json={"data": {}})
        undeleted = await other_http.delete("/v1/templates/receipt")
        own_put = await other_http.put("/v1/templates/receipt", json={"channel": "sms", "text": "theirs"})
        await other_http.delete("/v1/templates/receipt")
        kept = await http.get("/v1/templates/receipt")
        unusable = await other_http.post(
            "/v1/notifications", json={"channel": "email", "to": theirs, "template": "receipt", "data": {}}
        )
        await delivered(http, channel="email", to=mine, template="welcome", data={"name": "Ada"})
        await delivered(other_http, channel="email", to=theirs, template="welcome", data={"name": "Ada"})
    [own] = mail_to(plain_smtp[0], mine)
    [builtin] = mail_to(plain_smtp[0], theirs)
    assert (
        own["Subject"] == "Hey Ada, glad you came" and not own.is_multipart() and own.get_content().strip() == "Hi Ada!"
    )
    assert builtin["Subject"] == "Welcome, Ada" and "text/html" in parts(builtin)
    assert unseen.status_code == unpreviewed.status_code == undeleted.status_code == 404
    assert unlisted.json() == {"items": []} and own_put.status_code == 201
    assert kept.json()["channel"] == "email" and kept.json()["subject"] == RECEIPT["subject"]
    assert problem_of(unusable)["type"] == "unknown-template"


async def test_each_recipient_gets_its_own_data_merged_over_the_requests(api, settings, tenant, plain_smtp):
    ada, grace = address("ada"), address("grace")
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        await delivered(
            http,
            channel="email",
            to=[{"to": ada, "data": {"name": "Ada"}}, {"to": grace, "data": {"name": "Grace"}}],
            template="welcome",
            data={"name": "Someone", "product_name": "Acme", "campaign": "spring"},
        )
        await http.put("/v1/templates/receipt", json=RECEIPT)
        done = await delivered(
            http,
            channel="email",
            to=[{"to": ada, "data": {"order_id": "A-1"}}, {"to": grace, "data": {"order_id": "G-2", "name": "G"}}],
            template="receipt",
            data={"name": "Ada", "items": ["tea"]},
        )
    welcomes = {to: mail_to(plain_smtp[0], to)[0]["Subject"] for to in (ada, grace)}
    assert welcomes == {ada: "Welcome to Acme, Ada", grace: "Welcome to Acme, Grace"}
    receipts = {to: mail_to(plain_smtp[0], to)[1] for to in (ada, grace)}
    assert receipts[ada]["Subject"] == "Order A-1 is on its way" and "Hello Ada" in parts(receipts[ada])["text/plain"]
    assert (
        receipts[grace]["Subject"] == "Order G-2 is on its way" and "Hello G," in parts(receipts[grace])["text/plain"]
    )
    assert done["result"]["sent"] == 2


async def test_a_template_deleted_after_submit_fails_that_delivery_only(
    database_url, redis_server, tmp_path, plain_smtp
):
    """The worker renders what is stored when it sends: here nothing, and no built-in of that name."""
    settings = local_settings(
        database_url, redis_server.url, tmp_path / "s", smtp_url=plain_smtp[1], smtp_from="no-reply@acme.example"
    )
    tenant = await new_tenant(settings)
    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        await http.put("/v1/templates/note", json={"channel": "email", "subject": "Note", "text": "{{ body }}"})
        response = await http.post(
            "/v1/notifications",
            json={"channel": "email", "to": address("x"), "template": "note", "data": {"body": "b"}},
        )
        await http.delete("/v1/templates/note")
        async with running_worker(settings, PIPELINES):
            done = await wait_for_job(http, response.json()["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["type"] == "unknown_template"


async def test_the_openapi_document_describes_templates(api):
    async with client(api.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/templates/{name}"]) == {"put", "get", "delete"}
    assert "post" in paths["/v1/templates/{name}/preview"] and "get" in paths["/v1/templates"]


async def test_a_reminder_may_name_a_tenants_template(api, tenant):
    reminder = {"due_at": "2030-01-01T09:00:00Z", "channel": "email", "to": "a@example.com", "template": "receipt"}
    async with client(api.url, tenant[1]) as http:
        await http.put("/v1/templates/receipt", json=RECEIPT)
        lacking = problem_of(await http.post("/v1/reminders", json={**reminder, "data": {"name": "Ada"}}))
        stored = await http.post(
            "/v1/reminders", json={**reminder, "data": {"name": "Ada", "order_id": "A-1", "items": [], "x": 1}}
        )
    assert (lacking["field"], lacking["type"]) == ("data", "invalid-template-data") and "'order_id'" in lacking[
        "detail"
    ]
    assert stored.status_code == 201, stored.text


async def test_sms_and_push_render_a_tenants_template(api, settings, tenant, twilio, fcm):
    ada, grace, token = phone(), phone(), f"device-{uuid.uuid4().hex}"
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        await http.put("/v1/templates/code", json={"channel": "sms", "text": "{{ name }}, your code is {{ code }}"})
        await http.put(
            "/v1/templates/ping", json={"channel": "push", "subject": "Hi {{ name }}", "text": "{{ n }} new"}
        )
        await delivered(
            http,
            channel="sms",
            to=[{"to": ada, "data": {"name": "Ada"}}, {"to": grace, "data": {"name": "Grace", "code": "2"}}],
            template="code",
            data={"code": "1"},
        )
        await delivered(http, channel="push", to=token, template="ping", data={"name": "Ada", "n": 3})
    bodies = {message["to"]: message["body"] for message in twilio.messages if message["to"] in (ada, grace)}
    assert bodies == {ada: "Ada, your code is 1", grace: "Grace, your code is 2"}
    [push] = [message for message in fcm.messages if message["token"] == token]
    assert (push["notification"]["title"], push["notification"]["body"]) == ("Hi Ada", "3 new")
    assert push["data"] == {"template": "ping", "name": "Ada", "n": "3"}


async def test_a_template_that_cannot_render_fails_each_delivery(api, settings, tenant):
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ name }}"
    recipients = [address(f"r{index}") for index in range(3)]
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        await http.put("/v1/templates/endless", json={"channel": "email", "subject": "x", "text": endless})
        response = await http.post(
            "/v1/notifications",
            json={"channel": "email", "to": recipients, "template": "endless", "data": {"name": "Ada"}},
        )
        done = await wait_for_job(http, response.json()["id"], timeout=60)
    assert done["status"] == "failed" and done["error"]["type"] == "template_too_slow"
