"""Property-based tests (hypothesis) over every JSON body, query parameter and form field
the API reads, beside the schemathesis run: whatever a client sends, the answer is never
a 5xx, and every 4xx is problem+json. The strategies aim at the edges schemathesis does
not: NaN and Infinity, overflowing numbers, deep nesting, lone surrogates and NULs,
instants at the ends of the calendar with extreme offsets, hosts with bidi controls and
other characters IDNA refuses. The live API in a subprocess, real PostgreSQL and Redis."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.files import text_pdf
from tests.test_fuzz_api import live_api  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(300)
PROBLEM = "application/problem+json"
FUZZ = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# -- the edges ------------------------------------------------------------------------------
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from([10**4200, -(10**4200), 2**63, -(2**63) - 1]),  # Python prints 4,300 digits at most
)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "a\udfffb", "\u202e", "=1+1", "x" * 5000]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=20,
)
deep = st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth)
years = st.sampled_from(["0001", "0002", "1969", "2030", "9998", "9999"])
offsets = st.sampled_from(["Z", "+14:00", "-14:00", "+23:59", "-23:59", "+00:00", "", "+24:00"])
moments = st.one_of(
    st.builds(lambda year, offset: f"{year}-12-31T23:59:59{offset}", years, offsets),
    st.builds(lambda year, offset: f"{year}-01-01T00:00:00{offset}", years, offsets),
    texts,
)
days = st.one_of(st.builds(lambda year: f"{year}-01-01", years), st.builds(lambda year: f"{year}-12-31", years), texts)
hosts = st.one_of(
    st.sampled_from(
        [
            "exa\u202emple.invalid",
            "b\u00fccher.invalid",
            "a..b",
            "[::1",
            "127.0.0.1",
            "[::1]",
            "169.254.169.254",
            "10.0.0.1",
            "xn--.invalid",
            "\u0661\u0662.invalid",
            "x.invalid",
        ]
    ),
    st.text(min_size=1, max_size=20).map(lambda name: f"{name}.invalid"),
)
urls = st.one_of(
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "ftp", "javascript"]),
        hosts,
        st.text(max_size=10),
    ),
    texts,
)


def field(strategy):
    """A field's value: mostly the strategy aimed at it, sometimes any JSON at all."""
    return st.one_of(strategy, strategy, json_values)


def body(required: dict, optional: dict):
    return st.fixed_dictionaries(
        {name: field(s) for name, s in required.items()}, optional={name: field(s) for name, s in optional.items()}
    )


notifications = body(
    {
        "channel": st.sampled_from(["email", "sms", "push", "webhook", "fax"]),
        "to": st.one_of(urls, st.lists(urls, max_size=3), st.emails(), texts),
        "template": texts,
    },
    {"data": json_values, "send_at": moments, "metadata": json_values},
)
events = body(
    {
        "events": st.lists(
            body({"type": texts}, {"user_id": texts, "properties": json_values, "ts": moments}), max_size=3
        )
    },
    {},
)
reminders = body(
    {
        "due_at": moments,
        "channel": st.sampled_from(["email", "sms", "push", "webhook"]),
        "to": st.one_of(urls, st.lists(urls, max_size=3), texts),
        "template": texts,
    },
    {"data": json_values},
)
exports = body({"dataset": st.sampled_from(["events", "stats", "jobs", "users"]), "from": days, "to": days}, {})
memberships = body({"email": st.one_of(st.emails(), texts), "expires_at": moments}, {"data": json_values})


def encoded(strategy):
    """The body as bytes: JSON (NaN and Infinity written as Python writes them), or deep nesting."""
    as_json = strategy.map(lambda value: json.dumps(value, allow_nan=True).encode())
    return st.one_of(as_json, as_json, as_json, deep.map(str.encode))


def assert_answered(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM, response.text[:300]
        assert response.json()["status"] == response.status_code


@pytest.fixture(scope="module")
def http(live_api):
    api, key = live_api
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as session:
        yield session


@pytest.mark.parametrize(
    ("method", "path", "strategy"),
    [
        ("POST", "/v1/notifications", notifications),
        ("POST", "/v1/events", events),
        ("POST", "/v1/reminders", reminders),
        ("POST", "/v1/exports", exports),
        ("PUT", "/v1/memberships/fuzzed", memberships),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("/") else None,
)
def test_json_bodies(http, method, path, strategy):
    @FUZZ
    @given(content=encoded(strategy))
    def answers(content):
        assert_answered(http.request(method, path, content=content, headers={"content-type": "application/json"}))

    answers()


query_texts = st.one_of(
    texts, days, moments, st.integers().map(str), st.sampled_from(["-1", "0", "201", "1e9", "NaN", "%00"])
)


def query(params: dict[str, str]) -> str:
    """Percent-encoded as sent on the wire; a lone surrogate becomes bytes that are not UTF-8."""
    return "&".join(f"{quote(name)}={quote(value.encode('utf-8', 'surrogatepass'))}" for name, value in params.items())


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/v1/jobs", ["kind", "status", "limit", "cursor"]),
        ("/v1/stats", ["from", "to", "type"]),
        ("/v1/documents", ["email", "status", "limit", "cursor", "metadata.key", "unknown"]),
    ],
)
def test_query_parameters(http, path, names):
    @FUZZ
    @given(params=st.dictionaries(st.sampled_from(names), query_texts, max_size=len(names)))
    def answers(params):
        assert_answered(http.get(f"{path}?{query(params)}"))

    answers()


def test_multipart_fields(http):
    document = text_pdf("fuzz")
    form_texts = st.one_of(
        texts.filter(lambda text: "\x00" not in text),
        deep,
        json_values.map(lambda value: json.dumps(value, allow_nan=True)),
    )

    @settings(FUZZ, max_examples=30)
    @given(
        fields=st.fixed_dictionaries(
            {}, optional={"metadata": form_texts, "callback_url": urls, "renditions": form_texts}
        )
    )
    def answers(fields):
        fields = {name: value.encode("utf-8", "surrogatepass") for name, value in fields.items()}
        response = http.post(
            "/v1/documents",
            files={
                "file": ("f.pdf", document, "application/pdf"),
                **{name: (None, value) for name, value in fields.items()},
            },
        )
        assert_answered(response)

    answers()
