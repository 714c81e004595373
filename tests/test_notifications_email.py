"""Email through a real SMTP server (aiosmtpd): plain, STARTTLS with AUTH, implicit TLS."""

import email
import email.policy
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pipelines.notifications.mail import message_id, send_email
from service.config import Settings
from service.errors import PermanentError, TransientError
from testkit.net import free_port
from testkit.tls import self_signed

HOSTILE = '<img src=x onerror="alert(1)"> & Co'


@dataclass
class Mailbox:
    """An aiosmtpd handler: records what it accepts, refuses some recipients like a real MTA."""

    messages: list = field(default_factory=list)
    tls_used: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.startswith("later@"):
            return "451 4.3.0 Mailbox temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if b"REJECT-ME" in envelope.content:
            return "554 5.7.1 Message rejected as spam"
        self.tls_used.append(server.transport.get_extra_info("ssl_object") is not None)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"


def authenticate(server, session, envelope, mechanism, auth_data):
    # handled=False: aiosmtpd itself answers (235 or 535).
    return AuthResult(success=auth_data.login == b"mailer" and auth_data.password == b"s3cret", handled=False)


@pytest.fixture(scope="module")
def certificate():
    return self_signed()


def running_smtp(**parameters):
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **parameters)
    controller.start()
    return mailbox, controller


@pytest.fixture(scope="module")
def plain_smtp():
    mailbox, controller = running_smtp()
    yield mailbox, f"smtp://127.0.0.1:{controller.port}"
    controller.stop()


@pytest.fixture(scope="module")
def starttls_smtp(certificate):
    mailbox, controller = running_smtp(
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def implicit_tls_smtp(certificate):
    mailbox, controller = running_smtp(
        ssl_context=certificate.server_context(), authenticator=authenticate, auth_require_tls=False
    )
    yield mailbox, controller.port
    controller.stop()


def settings(smtp_url: str) -> Settings:
    return Settings(_env_file=None, smtp_url=smtp_url, smtp_from="Acme <no-reply@acme.example>")


def parts(message):
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


async def test_sends_multipart_alternative_with_escaped_html(plain_smtp):
    mailbox, url = plain_smtp
    before = len(mailbox.messages)
    delivery = await send_email(
        settings(url),
        to="Ada <ada@example.com>",
        template="password_reset",
        data={"name": HOSTILE, "reset_url": "https://acme.example/reset?t=1&u=2", "product_name": "Acme"},
        key="job-1:0",
    )
    message = mailbox.messages[before]
    assert message["Subject"] == "Reset your Acme password"
    assert message["From"] == "Acme <no-reply@acme.example>" and message["To"] == "Ada <ada@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    bodies = parts(message)
    assert set(bodies) == {"text/plain", "text/html"}
    assert HOSTILE in bodies["text/plain"] and "https://acme.example/reset?t=1&u=2" in bodies["text/plain"]
    assert (
        "<img src=x" not in bodies["text/html"]
        and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; Co" in bodies["text/html"]
    )
    assert 'href="https://acme.example/reset?t=1&amp;u=2"' in bodies["text/html"]
    assert message["Message-ID"] == delivery.message_id == message_id("job-1:0", "acme.example")
    assert delivery.channel == "email" and delivery.recipient == "Ada <ada@example.com>"


async def test_the_same_delivery_key_gives_the_same_message_id(plain_smtp):
    mailbox, url = plain_smtp
    before = len(mailbox.messages)
    for key in ("job-2:0", "job-2:0", "job-3:0"):
        await welcome(url, to="bo@example.com", name="Bo", key=key)
    ids = [message["Message-ID"] for message in mailbox.messages[before:]]
    assert ids[0] == ids[1] != ids[2]


async def welcome(smtp_url: str, *, to: str = "a@example.com", name: str = "A", key: str = "k", **options):
    """Send the welcome template through `smtp_url`; `options` go to send_email as they are."""
    return await send_email(settings(smtp_url), to=to, template="welcome", data={"name": name}, key=key, **options)


@pytest.mark.parametrize(
    ("to", "name", "error", "kind", "code"),
    [
        ("nobody@example.com", "N", PermanentError, "invalid_recipient", "550"),
        ("later@example.com", "L", TransientError, "smtp_deferred", "451"),
        ("ok@example.com", "REJECT-ME", PermanentError, "smtp_rejected", "554"),
    ],
    ids=["refused-recipient", "deferred-recipient", "rejected-message"],
)
async def test_smtp_refusals_keep_their_permanence(plain_smtp, to, name, error, kind, code):
    """5xx answers are permanent errors, 4xx transient ones, each typed and with the server's code."""
    _, url = plain_smtp
    with pytest.raises(error) as caught:
        await welcome(url, to=to, name=name)
    assert type(caught.value) is error and caught.value.type == kind and code in caught.value.message


async def test_no_server_is_a_transient_error():
    with pytest.raises(TransientError) as caught:
        await welcome(f"smtp://127.0.0.1:{free_port()}")
    assert caught.value.type == "smtp_unavailable"


async def test_invalid_recipient_and_bad_data_fail_before_connecting():
    unreachable = settings(f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(PermanentError) as caught:
        await send_email(unreachable, to="not-an-address", template="welcome", data={"name": "A"}, key="k")
    assert caught.value.type == "invalid_recipient"
    with pytest.raises(PermanentError) as caught:
        await send_email(unreachable, to="a@example.com", template="welcome", data={}, key="k")
    assert caught.value.type == "invalid_template_data"
    with pytest.raises(PermanentError) as caught:
        await send_email(Settings(_env_file=None), to="a@example.com", template="welcome", data={"name": "A"}, key="k")
    assert caught.value.type == "channel_not_configured"


async def test_starttls_is_used_when_offered_and_credentials_authenticate(starttls_smtp, certificate):
    mailbox, port = starttls_smtp
    await welcome(f"smtp://mailer:s3cret@localhost:{port}", key="k1", tls_context=certificate.client_context())
    assert mailbox.tls_used == [True] and mailbox.messages[0]["Subject"] == "Welcome, A"


async def test_wrong_credentials_are_a_permanent_auth_error(starttls_smtp, certificate):
    _, port = starttls_smtp
    with pytest.raises(PermanentError) as caught:
        await welcome(f"smtp://mailer:wrong@localhost:{port}", key="k2", tls_context=certificate.client_context())
    assert caught.value.type == "channel_auth_failed"


async def test_smtps_uses_implicit_tls(implicit_tls_smtp, certificate):
    mailbox, port = implicit_tls_smtp
    await send_email(
        settings(f"smtps://mailer:s3cret@localhost:{port}"),
        to="a@example.com",
        template="membership_expiry",
        data={"name": "A", "expires_on": "31 May"},
        key="k3",
        tls_context=certificate.client_context(),
    )
    assert mailbox.tls_used == [True] and "31 May" in mailbox.messages[0]["Subject"]


async def test_an_untrusted_certificate_is_refused(implicit_tls_smtp):
    _, port = implicit_tls_smtp
    with pytest.raises(TransientError) as caught:
        await welcome(f"smtps://mailer:s3cret@localhost:{port}", key="k4")
    assert caught.value.type == "smtp_unavailable"


async def test_a_file_url_is_a_sink_keeping_one_file_per_delivery(tmp_path):
    sink = Settings(smtp_url=f"file://{tmp_path}/mail")
    for key in ("job-4:0", "job-4:0", "job-5:0"):  # a delivery repeated after a crash replaces its copy
        delivery = await send_email(sink, to="cy@example.com", template="welcome", data={"name": "Cy"}, key=key)
    assert delivery.provider == "sink"
    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 2 and all(path.suffix == ".eml" for path in files)
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == "cy@example.com" and "Cy" in message.get_body(preferencelist=("plain",)).get_content()
