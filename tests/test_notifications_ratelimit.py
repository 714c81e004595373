"""The shared token bucket on a real Redis, and bulk fan-out through it."""

import asyncio
import uuid

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from pipelines.notifications.bulk import fan_out
from pipelines.notifications.channels import Delivery
from pipelines.notifications.sms import send_sms
from service.config import Settings
from service.errors import PermanentError, TransientError
from service.ratelimit import Rate, RateLimiter, TokenBucket
from testkit.twilio_server import TwilioServer


@pytest.fixture
async def two_clients(redis_server):
    first, second = Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)
    yield first, second
    await first.aclose()
    await second.aclose()


def limiters(clients, rates, **options):
    prefix = f"test:{uuid.uuid4().hex}:"
    return [RateLimiter(client, rates, prefix=prefix, **options) for client in clients]


async def test_two_clients_share_one_burst(two_clients):
    # 3 tokens and a refill of one per 10 s: whoever asks, only 3 go through now.
    one, other = limiters(two_clients, {"sms": Rate(per_second=0.1, burst=3)}, max_wait=1)
    granted = [await limiter.acquire("sms") for limiter in (one, other, one)]
    assert granted == [0.0, 0.0, 0.0]
    for limiter in (other, one):
        with pytest.raises(TransientError) as caught:
            await limiter.acquire("sms")
        assert caught.value.type == "rate_limited" and 0 < caught.value.retry_after <= 10


async def test_waiters_reserve_in_turn_instead_of_failing(two_clients):
    one, other = limiters(two_clients, {"push": Rate(per_second=5, burst=1)}, max_wait=5)
    waits = await asyncio.gather(one.acquire("push"), other.acquire("push"), one.acquire("push"))
    assert sorted(waits)[0] == 0.0 and all(wait > 0 for wait in sorted(waits)[1:])
    assert len(set(waits)) == 3  # each waiter got its own later slot


async def test_channels_have_separate_buckets_and_unlisted_ones_are_free(two_clients):
    one, _ = limiters(
        two_clients, {"sms": Rate(per_second=0.1, burst=1), "email": Rate(per_second=0.1, burst=1)}, max_wait=0
    )
    assert await one.acquire("sms") == 0.0 and await one.acquire("email") == 0.0
    with pytest.raises(TransientError):
        await one.acquire("sms")
    assert [await one.acquire("webhook") for _ in range(5)] == [0.0] * 5


def test_rates_must_be_positive():
    with pytest.raises(ValueError):
        Rate(per_second=0)


@pytest.fixture(scope="module")
def twilio():
    server = TwilioServer().start()
    yield server
    server.stop()


async def test_fan_out_sends_to_each_recipient_and_reports_each_outcome(twilio, two_clients):
    settings = Settings(
        _env_file=None,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=SecretStr(twilio.auth_token),
        twilio_from="+15005550006",
        twilio_base_url=twilio.url,
    )
    limiter, _ = limiters(two_clients, {"sms": Rate(per_second=1000, burst=1000)})
    recipients = [f"+4477009000{n:02d}" for n in range(12)] + ["not-a-number"]
    in_flight, peak = 0, 0

    async def send_one(to: str) -> Delivery:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await send_sms(settings, to=to, template="welcome", data={"name": "Ada"}, key=f"bulk-1:{to}")
        finally:
            in_flight -= 1

    before = len(twilio.messages)
    outcomes = await fan_out(recipients, send_one, channel="sms", limiter=limiter, concurrency=4)
    assert [outcome.recipient for outcome in outcomes] == recipients
    assert [outcome.ok for outcome in outcomes] == [True] * 12 + [False]
    assert outcomes[-1].error.type == "invalid_recipient"
    assert {message["to"] for message in twilio.messages[before:]} == set(recipients[:12])
    assert 1 <= peak <= 4


async def test_fan_out_lets_a_bug_propagate():
    async def broken(to: str) -> Delivery:
        if to == "b":
            raise RuntimeError("bug")
        raise PermanentError("refused", type="invalid_recipient")

    with pytest.raises(ExceptionGroup) as caught:
        await fan_out(["a", "b", "c"], broken, channel="sms", concurrency=2)
    assert caught.group_contains(RuntimeError)


async def test_concurrent_takes_share_one_script_and_keep_their_order(two_clients):
    client, observer = two_clients
    bucket = TokenBucket(client, f"test:{uuid.uuid4().hex}:")
    rate = Rate(per_second=0.01, burst=5)
    await bucket.take("warm", rate)  # loads the script: what follows is counted alone
    before = await _script_calls(observer)
    answers = await asyncio.gather(*(bucket.take("shared", rate) for _ in range(8)), bucket.take("own", rate))
    calls = await _script_calls(observer) - before

    shared, own = answers[:8], answers[8]
    assert [taken.taken for taken in shared] == [True] * 5 + [False] * 3  # in the order asked
    assert [taken.remaining for taken in shared[:5]] == [4, 3, 2, 1, 0]
    assert all(90 < taken.wait <= 100 for taken in shared[5:])  # a token comes back every 100 s
    assert own.taken and own.remaining == 4  # a bucket of its own, untouched by the others
    assert calls <= 2  # the first take alone, then everyone who arrived meanwhile in one script


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))
