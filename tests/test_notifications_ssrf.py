"""The SSRF guard: refusals, the allow list, and connecting to the address that was checked."""

import ipaddress

import httpx
import pytest

from pipelines.notifications.ssrf import AllowList, check_destination, forbidden_reason, guarded_client, validate_url
from pipelines.notifications.webhooks import generate_secret, send_webhook
from service.errors import PermanentError
from testkit.tls import self_signed
from testkit.webhook_receiver import WebhookReceiver

SECRET = generate_secret()


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


def resolver_for(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.10/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[::1]:9/", "loopback"),
        ("http://[::ffff:127.0.0.1]:9/", "loopback"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0:9/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://localhost:9/", "loopback"),
    ],
)
async def test_internal_destinations_are_refused(url, reason):
    with pytest.raises(PermanentError) as caught:
        await check_destination(url, [])
    assert caught.value.type == "destination_refused" and reason in caught.value.message
    async with guarded_client([], timeout=2) as client:
        with pytest.raises(PermanentError) as caught:
            await client.get(url)
    assert caught.value.type == "destination_refused"


def test_public_addresses_pass():
    for address in ("93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"):
        assert forbidden_reason(ipaddress.ip_address(address)) is None


async def test_the_allow_list_takes_hostnames_ips_and_cidrs(receiver):
    path = f":{receiver.served.port}/allowed"
    for allowed, url in [
        (["127.0.0.0/8"], f"http://127.0.0.1{path}"),
        (["127.0.0.1"], f"http://127.0.0.1{path}"),
        (["LOCALHOST"], f"http://localhost{path}"),
    ]:
        assert await send_webhook(url, b"{}", webhook_id="msg_allowed", secrets=SECRET, allowed_hosts=allowed) == 200
    assert len(receiver.at("allowed")) == 3
    with pytest.raises(PermanentError):
        await check_destination("http://10.0.0.1/", ["127.0.0.0/8", "localhost"])


async def test_one_forbidden_address_among_public_ones_refuses_the_host():
    resolve = resolver_for({"mixed.example": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(PermanentError) as caught:
        await check_destination("https://mixed.example/hook", [], resolve)
    assert "10.0.0.5" in caught.value.message


async def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(receiver):
    # DNS (here a resolver we control) says hooks.example.test is 127.0.0.1: allowed as an IP,
    # so the guard connects there itself; the request still names the original host.
    resolve = resolver_for({"hooks.example.test": ["127.0.0.1"]})
    async with guarded_client(["127.0.0.1"], timeout=5, resolver=resolve) as client:
        response = await client.post(f"http://hooks.example.test:{receiver.served.port}/pinned", content=b"{}")
    assert response.status_code == 401  # unsigned, so the receiver refuses it: but it got it
    [received] = receiver.at("pinned")
    assert received.headers["host"] == f"hooks.example.test:{receiver.served.port}"


async def test_a_hostname_rebound_to_loopback_is_refused_at_connect_time():
    resolve = resolver_for({"rebind.example": ["127.0.0.1"]})
    async with guarded_client([], timeout=5, resolver=resolve) as client:
        with pytest.raises(PermanentError) as caught:
            await client.get("http://rebind.example/")
    assert caught.value.type == "destination_refused" and "rebind.example (127.0.0.1)" in caught.value.message


async def test_tls_verifies_the_certificate_against_the_url_host_not_the_ip():
    certificate = self_signed("hooks.example.test", with_loopback_ip=False)
    server = WebhookReceiver(SECRET, certificate=certificate).start()
    resolve = resolver_for({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    try:
        async with guarded_client(
            ["127.0.0.1"], timeout=5, resolver=resolve, verify=certificate.client_context()
        ) as client:
            status = await send_webhook(
                f"https://hooks.example.test:{server.served.port}/tls",
                b"{}",
                webhook_id="msg_tls",
                secrets=SECRET,
                client=client,
            )
            assert status == 200 and server.at("tls")[0].verified
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.get(f"https://other.example.test:{server.served.port}/tls")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "https://",
        "example.com/hook",
        "http://exa mple.com/",
        "https://example.com:99999/",
        "https://example.com/" + "a" * 2100,
        "",
        None,
        "gopher://127.0.0.1:6379/_FLUSHALL",
    ],
)
def test_validate_url_refuses_what_is_not_a_plain_http_url(url):
    with pytest.raises(PermanentError) as caught:
        validate_url(url)
    assert caught.value.type == "invalid_url"


def test_validate_url_accepts_http_and_https():
    for url in ("https://hooks.example.com/conveyor?x=1", "http://user:pass@example.com:8080/a"):
        assert validate_url(url) == url


def test_allow_list_parsing():
    allow = AllowList(["  ", "Hooks.Internal.", "10.0.0.0/8", "::1", "[fd00::1]"])
    assert allow.allows_host("hooks.internal") and not allow.allows_host("other.internal")
    assert allow.allows_ip(ipaddress.ip_address("10.9.9.9")) and allow.allows_ip(ipaddress.ip_address("::1"))
    assert allow.allows_ip(ipaddress.ip_address("fd00::1")) and not allow.allows_ip(ipaddress.ip_address("11.0.0.1"))
