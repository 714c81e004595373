import uuid

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from pipelines.documents.extract import extractor_for
from pipelines.documents.extract.gemini import GeminiExtractor
from pipelines.documents.extract.openai import OpenAIExtractor
from pipelines.documents.extract.rules import RulesExtractor, extract_fields
from pipelines.documents.extract.schema import GEMINI_RESPONSE_SCHEMA, RESUME_JSON_SCHEMA, ResumeFields
from service.config import Settings
from service.errors import PermanentError, TransientError
from service.ratelimit import Rate, RateLimiter
from testkit.llm_servers import API_KEY, Fault

RESUME = """JANE DOE
Location: Berlin, Germany
jane.doe@example.com | Phone: +49 30 1234 5678 | linkedin.com/in/janedoe
https://github.com/janedoe

Summary
Backend engineer who builds reliable data pipelines.

Skills: Python, PostgreSQL, Kubernetes; Team leadership

Experience
2015 - 2019 ACME Corp: services in Go and TypeScript, I would go anywhere.
"""

EXPECTED = ResumeFields(
    name="Jane Doe",
    email="jane.doe@example.com",
    phone="+49 30 1234 5678",
    location="Berlin, Germany",
    links=["linkedin.com/in/janedoe", "https://github.com/janedoe"],
    skills=["Python", "PostgreSQL", "Kubernetes", "Go", "TypeScript", "Team leadership"],
    summary="Backend engineer who builds reliable data pipelines.",
)


@pytest.fixture
def servers(llm_servers):
    llm_servers.reset()
    yield llm_servers
    llm_servers.reset()


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def two_connections(redis_server):
    """Separate Redis clients, as two worker processes would have."""
    clients = [Redis.from_url(redis_server.url) for _ in range(2)]
    yield clients
    for client in clients:
        await client.aclose()


def client_for(provider, servers, **options):
    options = {"api_key": API_KEY, "backoff": 0.01, "timeout": 10.0, **options}
    if provider == "openai":
        return OpenAIExtractor(base_url=servers.openai_base_url, model="gpt-test", **options)
    return GeminiExtractor(base_url=servers.gemini_base_url, model="gemini-test", **options)


async def extract(provider, servers, text=RESUME, **options):
    client = client_for(provider, servers, **options)
    try:
        return await client.extract(text)
    finally:
        await client.aclose()


async def failure(provider, servers, **options):
    with pytest.raises((PermanentError, TransientError)) as caught:
        await extract(provider, servers, **options)
    return caught.value


def token_limits(servers, provider):
    if provider == "openai":
        return [request["max_tokens"] for request in servers.requests]
    return [request["generationConfig"]["maxOutputTokens"] for request in servers.requests]


providers = pytest.mark.parametrize("provider", ["openai", "gemini"])

# -- the schema and the rules -------------------------------------------------------------


def test_json_schema_is_strict():
    assert RESUME_JSON_SCHEMA["additionalProperties"] is False
    assert RESUME_JSON_SCHEMA["required"] == list(ResumeFields.model_fields)
    assert RESUME_JSON_SCHEMA["properties"]["email"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


def test_gemini_schema_marks_absent_values_nullable():
    assert GEMINI_RESPONSE_SCHEMA["properties"]["email"] == {
        "type": "string",
        "nullable": True,
        "description": RESUME_JSON_SCHEMA["properties"]["email"]["description"],
    }
    assert GEMINI_RESPONSE_SCHEMA["properties"]["skills"]["items"] == {"type": "string"}
    assert GEMINI_RESPONSE_SCHEMA["propertyOrdering"] == list(ResumeFields.model_fields)


async def test_rules_extract_the_fields_of_a_resume():
    assert await RulesExtractor().extract(RESUME) == EXPECTED


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("Tel: (555) 123-4567", "(555) 123-4567"),
        ("Worked 2015 - 2019 and 2019-2023", None),
        ("call +1 415 555 0100 anytime", "+1 415 555 0100"),
        ("Order 12345", None),
    ],
)
def test_rules_tell_phone_numbers_from_other_numbers(text, phone):
    assert extract_fields(text).phone == phone


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Jane Doe jane@example.com +1 555 123 4567", "Jane Doe"),
        ("JANE DOE | +49 30 1234 5678 | linkedin.com/in/janedoe", "Jane Doe"),
        ("Jane Doe", "Jane Doe"),
        ("Python Developer - 5 years", None),
        ("Contact: jane@example.com", None),
    ],
)
def test_rules_find_the_name_before_contact_details_on_its_line(header, name):
    assert extract_fields(f"{header}\nSummary\nBuilds things.").name == name


@pytest.mark.parametrize(
    "text",
    [
        "Crash dump: 00000010  00 00 00 00 00 00 00 00  12 34 56 78 90 12 34 56",
        "Trap payload (hex): 30 82 01 0a 02 01 01 04 06 70 75 62 6c 69 63",
        "sysUpTime 1.3.6.1.2.1.1.3.0 and 1.3.6.1.4.1.9.9.13.1.3.1.3",
        "Factory MAC: 00:1A:2B:3C:4D:5E, unique ID 0x1FFF 7A10 0032 0045",
        "Invoice date: 15.03.2024, crash at 2024-05-17 14:22:03",
        "Customer ID: 4481200931; order number 558-221-9043; serial 20240517",
        "IBAN DE89 3704 0044 0532 0130 00",
    ],
)
def test_rules_refuse_hex_dumps_oids_dates_and_ids_as_phones(text):
    assert extract_fields(text).phone is None


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("Paris · +33 6 12 34 56 78 · camille@example.fr", "+33 6 12 34 56 78"),
        ("Mobile: +49 171 2345678", "+49 171 2345678"),
        ("Phoenix, AZ\n602.555.0187", "602.555.0187"),
        ("São Paulo · +55 11 91234-5678", "+55 11 91234-5678"),
    ],
)
def test_rules_find_european_and_american_phone_formats(text, phone):
    assert extract_fields(text).phone == phone


@pytest.mark.parametrize(
    "first_line",
    [
        "Experienced Engineer Seeking New Challenges.",
        "Results Driven Leader With Proven Track Record",
        "Senior Software Engineer",
        "Summary Of Changes",
        "Mr. Alan Thompson",
        "Google Analytics",
    ],
)
def test_rules_refuse_sentences_titles_and_skills_as_names(first_line):
    assert extract_fields(f"{first_line}\nSummary\nBuilds things.").name is None


def test_rules_match_headings_on_word_boundaries():
    text = "Jane Doe\nSummary of changes in version 2\nAboutique retail\nProfile of the stage\nObjective lenses: 4x"
    assert extract_fields(text).summary is None
    assert extract_fields("Jane Doe\nProfile:\nBuilds things.").summary == "Builds things."


def test_rules_tell_rest_the_architecture_from_the_word():
    assert extract_fields("Let it rest for 30 seconds; the rest of the team agreed.").skills == []
    assert extract_fields("Designed REST APIs and RESTful services in Go.").skills == ["REST", "Go"]


@pytest.mark.parametrize(
    ("text", "link"),
    [
        ("Portfolio: https://lucia.example.es/work.", "https://lucia.example.es/work"),
        ("(see https://dribbble.com/lucia).", "https://dribbble.com/lucia"),
        ("update https://wiki.example.com/atlas/runbook).", "https://wiki.example.com/atlas/runbook"),
        ("https://en.wikipedia.org/wiki/Ada_(language), and more", "https://en.wikipedia.org/wiki/Ada_(language)"),
        ("linkedin.com/in/jane;", "linkedin.com/in/jane"),
    ],
)
def test_rules_keep_sentence_punctuation_out_of_links(text, link):
    assert extract_fields(text).links == [link]


def test_rules_leave_what_is_not_there_empty():
    assert extract_fields("") == ResumeFields(
        name=None, email=None, phone=None, location=None, links=[], skills=[], summary=None
    )
    assert extract_fields("Curriculum Vitae\nlet's go to the lake").name is None
    assert extract_fields("let's go to the lake").skills == []


# -- the LLM clients ------------------------------------------------------------------------


@providers
async def test_answer_is_validated_into_fields(servers, provider):
    assert await extract(provider, servers) == EXPECTED
    assert servers.calls[provider] == 1


@providers
async def test_rate_limited_answers_are_retried(servers, provider):
    servers.script(Fault("rate_limited", retry_after="0.05"), Fault("rate_limited"))
    assert await extract(provider, servers) == EXPECTED
    assert servers.calls[provider] == 3


async def test_openai_retry_after_ms_is_honoured(servers):
    servers.script(Fault("rate_limited", retry_after="30", retry_after_ms="20"))
    assert await extract("openai", servers, timeout=5.0) == EXPECTED
    assert servers.calls["openai"] == 2


@providers
async def test_a_wait_longer_than_the_budget_goes_back_to_the_job(servers, provider):
    servers.script(Fault("rate_limited", retry_after="120"))
    error = await failure(provider, servers, timeout=5.0)
    assert isinstance(error, TransientError)
    assert error.type == "llm_rate_limited"
    assert error.retry_after == 120
    assert servers.calls[provider] == 1


@providers
@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retried(servers, provider, status):
    servers.script(Fault("server_error", status=status), Fault("server_error", status=status))
    assert await extract(provider, servers) == EXPECTED
    assert servers.calls[provider] == 3


@providers
async def test_server_errors_that_persist_are_transient(servers, provider):
    servers.script(*[Fault("server_error")] * 3)
    error = await failure(provider, servers, max_attempts=3)
    assert isinstance(error, TransientError)
    assert error.type == "llm_unavailable"
    assert servers.calls[provider] == 3


@providers
async def test_exhausted_quota_is_not_retried(servers, provider):
    servers.script(Fault("quota"))
    error = await failure(provider, servers)
    assert isinstance(error, PermanentError)
    assert error.type == "llm_quota_exceeded"
    assert servers.calls[provider] == 1


@providers
async def test_a_cut_off_answer_is_asked_again_with_more_tokens(servers, provider):
    assert await extract(provider, servers, max_tokens=60) == EXPECTED
    assert token_limits(servers, provider) == [60, 240]


@providers
async def test_an_answer_cut_off_twice_fails(servers, provider):
    error = await failure(provider, servers, max_tokens=5)
    assert error.type == "llm_output_truncated"
    assert token_limits(servers, provider) == [5, 20]


@providers
async def test_invalid_json_is_asked_again_once(servers, provider):
    servers.script(Fault("invalid_json"))
    assert await extract(provider, servers) == EXPECTED
    assert servers.calls[provider] == 2


@providers
async def test_invalid_json_twice_fails(servers, provider):
    servers.script(Fault("invalid_json"), Fault("invalid_json"))
    error = await failure(provider, servers)
    assert isinstance(error, PermanentError)
    assert error.type == "llm_invalid_output"
    assert servers.calls[provider] == 2


@providers
async def test_a_hung_attempt_is_abandoned_and_retried(servers, provider):
    servers.script(Fault("slow", seconds=3))
    assert await extract(provider, servers, attempt_timeout=0.3) == EXPECTED
    assert servers.calls[provider] == 2


async def test_a_wrong_key_is_permanent(servers):
    error = await failure("openai", servers, api_key="wrong")
    assert error.type == "llm_auth_failed"


async def test_unreachable_server_is_transient(servers):
    client = OpenAIExtractor(api_key=API_KEY, base_url="http://127.0.0.1:9/v1", backoff=0.01, max_attempts=2)
    with pytest.raises(TransientError) as caught:
        await client.extract(RESUME)
    await client.aclose()
    assert caught.value.type == "llm_unavailable"


# -- the shared rate limit ----------------------------------------------------------------


def llm_limiter(redis: Redis, prefix: str, per_minute: int, burst: int) -> RateLimiter:
    """The OpenAI client's limiter, as `extractor_for` makes it, under a test's own prefix."""
    return RateLimiter(
        redis,
        {"openai": Rate.per_minute(per_minute, burst)},
        prefix=prefix,
        max_wait=30.0,
        error_type="llm_rate_limited",
    )


async def test_limiters_in_different_processes_share_one_bucket(two_connections):
    key = f"test:rate:{uuid.uuid4()}:"
    limiter_a, limiter_b = (llm_limiter(client, key, per_minute=1, burst=2) for client in two_connections)
    await limiter_a.acquire("openai")
    await limiter_b.acquire("openai")
    with pytest.raises(TransientError) as caught:
        await limiter_a.acquire("openai", max_wait=0.2)
    assert caught.value.type == "llm_rate_limited"
    assert caught.value.retry_after > 1
    await llm_limiter(two_connections[1], f"{key}other:", per_minute=1, burst=2).acquire("openai", max_wait=0)


async def test_acquire_waits_for_the_next_token(redis):
    limiter = llm_limiter(redis, f"test:rate:{uuid.uuid4()}:", per_minute=1200, burst=1)
    for _ in range(4):
        await limiter.acquire("openai", max_wait=2)
    assert float(await redis.hget(limiter.prefix + "openai", "tokens")) < 1


async def test_two_clients_together_keep_to_the_rate(servers, two_connections):
    key = f"test:rate:{uuid.uuid4()}"
    clients = [
        client_for("openai", servers, limiter=llm_limiter(connection, key, per_minute=1, burst=2), timeout=1.0)
        for connection in two_connections
    ]
    try:
        assert await clients[0].extract(RESUME) == EXPECTED
        assert await clients[1].extract(RESUME) == EXPECTED
        with pytest.raises(TransientError) as caught:
            await clients[0].extract(RESUME)
        assert caught.value.type == "llm_rate_limited"
        assert servers.calls["openai"] == 2
    finally:
        for client in clients:
            await client.aclose()


# -- choosing by configuration --------------------------------------------------------------


async def test_default_configuration_uses_the_rules():
    extractor = extractor_for(Settings(), None)
    assert isinstance(extractor, RulesExtractor)


@providers
async def test_configured_provider_is_used(servers, redis, provider):
    base_url = servers.openai_base_url if provider == "openai" else servers.gemini_base_url
    settings = Settings(
        llm_provider=provider, llm_base_url=base_url, llm_api_key=SecretStr(API_KEY), llm_model="m", llm_timeout=5
    )
    extractor = extractor_for(settings, redis)
    try:
        assert await extractor.extract(RESUME) == EXPECTED
    finally:
        await extractor.aclose()
    assert servers.calls[provider] == 1
    assert await redis.exists(f"conveyor:llm-rate:{provider}")
