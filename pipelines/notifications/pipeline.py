"""The notification and callback pipelines: each delivery happens once, whatever fails.

Every recipient goes through the delivery log (`deliveries`): claimed `pending` before
the send, `sent` with the provider's id right after, each in its own transaction. A
retry or a re-run after a crash skips what is `sent` or `failed`; a `pending` recipient
(the process died between the provider's answer and the log) is sent again with the same
idempotency key, which Twilio, OneSignal and webhook receivers (`webhook-id`) deduplicate.

Outcome rule for a notification job: a recipient that fails for good (invalid address,
410 Gone, credentials refused) is recorded and the others go on; transient failures are
retried (only those recipients) after the others finished; the job succeeds when at
least one recipient got the message, with every recipient's outcome in its result, and
fails only when none did.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from conveyor.kinds import Pipeline, Stage
from service.config import Settings
from service.errors import DependencyUnavailable, JobError, PermanentError, TransientError
from service.ledger import Fenced, callbacks
from service.ledger.tenants import webhook_secrets
from service.templating import tenant_templates
from service.templating.tenant_templates import TenantTemplate

from . import SENDERS, deliveries
from .bulk import Outcome, fan_out
from .channels import Delivery
from .input import recipient_data
from .templates import render_tenant
from .webhooks import event_body, next_retry_delay, send_webhook

if TYPE_CHECKING:
    from pipelines.job_run import JobRun

Send = Callable[[str], Awaitable[Delivery]]

BULK_CONCURRENCY = 10
NOTIFICATION_MAX_TRIES = 8
NOTIFICATION_TIMEOUT = 3600.0  # a thousand SMS at a long code's 1/s take a quarter of it
CALLBACK_TIMEOUT = 60.0


def delivery_key(job_id: uuid.UUID, channel: str, recipient: str) -> str:
    """Our idempotency key for one delivery, stable across retries and re-runs: short and
    URL-safe for Twilio's token and webhook-id; email and OneSignal derive theirs from it."""
    return hashlib.sha256(f"{job_id}:{channel}:{recipient}".encode()).hexdigest()[:40]


def retry_delay(run: JobRun) -> float | None:
    """When webhook deliveries of this job should be tried again (the configured schedule,
    jittered), or None when this attempt is the last one."""
    if run.attempt >= run.job["max_tries"]:
        return None
    return next_retry_delay(run.attempt, run.settings.webhook_retry_schedule)


async def deliver_once(run: JobRun, channel: str, recipient: str, send: Send, *, final: bool) -> Delivery:
    """Send to one recipient unless the log says it already ended; record the outcome.

    `final`: a transient failure now is recorded as `failed` (no try is left).
    """
    db = run.resources.db
    try:
        recorded = await deliveries.claim(db, run.job_id, run.attempt, channel, recipient)
        if recorded is not None:
            if recorded.delivery is None:
                raise recorded.error or PermanentError("failed earlier")
            return recorded.delivery
        try:
            delivery = await send(recipient)
        except JobError as error:
            await deliveries.mark_error(db, run.job_id, channel, recipient, error, final=final or not error.retryable)
            raise
        await deliveries.mark_sent(db, run.job_id, delivery)
        return delivery
    except DependencyUnavailable as exc:
        raise TransientError(
            f"the delivery log ({exc.dependency}) is unavailable", type="dependency_unavailable"
        ) from exc


def _webhook_sender(
    run: JobRun, body: Callable[[str], bytes], secrets: list[str], webhook_id: Callable[[str], str]
) -> Send:
    """Each URL gets `body(url)`, signed with every live secret."""
    resources = run.resources

    async def send(url: str) -> Delivery:
        message_id = webhook_id(url)
        await send_webhook(
            url,
            body(url),
            webhook_id=message_id,
            secrets=secrets,
            client=resources.webhooks,
            timeout=resources.settings.webhook_timeout,
        )
        return Delivery(channel="webhook", provider="http", recipient=url, message_id=message_id)

    return send


async def _tenant_secrets(run: JobRun) -> list[str]:
    async with run.resources.db.transaction() as conn:
        return await webhook_secrets(conn, run.job["tenant_id"])


def _sent_at(run: JobRun) -> datetime:
    """The event's timestamp: fixed for the job, so the body is the same on every retry."""
    return run.job["run_at"] or run.job["created_at"]


async def _tenant_template(run: JobRun, channel: str, name: str) -> TenantTemplate | None:
    """The tenant's own template `name` (which wins over a built-in), if it has one."""
    async with run.resources.db.transaction() as conn:
        custom = await tenant_templates.find(conn, run.job["tenant_id"], name)
    if custom is not None and custom.channel != channel:
        raise PermanentError(f"template {name!r} is now for {custom.channel}, not {channel}", type="template_channel")
    return custom


async def _sender(run: JobRun, channel: str) -> Send:
    """How this job sends to one recipient: its message made of the recipient's own data
    merged over the request's."""
    payload, settings, http = run.payload, run.settings, run.resources.http
    template = payload["template"]

    def key(recipient: str) -> str:
        return delivery_key(run.job_id, channel, recipient)

    if channel == "webhook":
        sent_at = _sent_at(run)
        return _webhook_sender(
            run,
            lambda url: event_body(template, recipient_data(payload, url), sent_at),
            await _tenant_secrets(run),
            lambda url: f"msg_{key(url)}",
        )

    sender = SENDERS[channel]
    custom = await _tenant_template(run, channel, template)
    too_slow: list[PermanentError] = []  # too slow for one recipient is too slow for all: fail them at once

    async def send(recipient: str) -> Delivery:
        data = recipient_data(payload, recipient)
        rendered = None
        if custom is not None:
            if too_slow:
                raise too_slow[0]
            try:
                rendered = await render_tenant(custom, data)
            except PermanentError as error:
                if error.type == "template_too_slow":
                    too_slow.append(error)
                raise
        return await sender(
            settings, to=recipient, template=template, data=data, key=key(recipient), client=http, rendered=rendered
        )

    return send


def _report(recipient: str, delivery: Delivery | None, error: JobError | None) -> dict:
    if delivery is not None:
        return {"to": recipient, "status": "sent", "provider": delivery.provider, "message_id": delivery.message_id}
    assert error is not None
    return {"to": recipient, "status": "failed", "error": error.as_dict()}


async def _fan_out(run: JobRun, channel: str, recipients: list[str], send_one: Send) -> list[Outcome]:
    """bulk.fan_out, with a lost ownership or a dead database surfacing as themselves (the
    runner knows what to do with them) rather than inside an ExceptionGroup."""
    try:
        return await fan_out(
            recipients, send_one, channel=channel, limiter=run.resources.limiter, concurrency=BULK_CONCURRENCY
        )
    except ExceptionGroup as group:
        known, unknown = group.split((Fenced, DependencyUnavailable))
        if known is not None and unknown is None:
            raise known.exceptions[0] from None
        raise


def _all_failed(errors: list[JobError]) -> PermanentError:
    if len(errors) == 1:
        return PermanentError(errors[0].message, type=errors[0].type)
    types = {error.type for error in errors}
    kind = types.pop() if len(types) == 1 else "delivery_failed"
    return PermanentError(
        f"none of the {len(errors)} recipients could be reached; first: {errors[0].message}", type=kind
    )


async def notify(run: JobRun, input: dict) -> dict:
    """The `deliver` stage of a notification: every recipient, concurrently, once."""
    channel, recipients = run.payload["channel"], run.payload["to"]
    send = await _sender(run, channel)
    ended = await deliveries.ended(run.resources.db, run.job_id, channel)
    delay = retry_delay(run) if channel == "webhook" else None
    final = run.attempt >= run.job["max_tries"] or (channel == "webhook" and delay is None)
    finished = len(ended)

    async def tick() -> None:
        nonlocal finished
        finished += 1
        await run.progress(finished / len(recipients))

    async def send_one(recipient: str) -> Delivery:
        try:
            delivery = await deliver_once(run, channel, recipient, send, final=final)
        except JobError:
            await tick()
            raise
        await tick()
        return delivery

    todo = [recipient for recipient in recipients if recipient not in ended]
    outcomes = {outcome.recipient: outcome for outcome in await _fan_out(run, channel, todo, send_one)}
    transient = [
        outcome.error for outcome in outcomes.values() if outcome.error is not None and outcome.error.retryable
    ]
    if transient and not final:
        first = transient[0]
        hints = [error.retry_after for error in transient if isinstance(error, TransientError) and error.retry_after]
        wait = max([delay or 0.0, *hints]) or None
        raise TransientError(
            f"{len(transient)} of {len(recipients)} recipients not reached yet (retrying only those): {first.message}",
            type=first.type,
            retry_after=wait,
        )
    results = [(recipient, ended.get(recipient) or outcomes[recipient]) for recipient in recipients]
    errors = [result.error for _, result in results if result.error is not None]
    if len(errors) == len(recipients):
        raise _all_failed(errors)
    return {
        "channel": channel,
        "sent": len(recipients) - len(errors),
        "failed": len(errors),
        "deliveries": [_report(recipient, result.delivery, result.error) for recipient, result in results],
    }


async def call_back(run: JobRun, input: dict) -> dict:
    """The `deliver` stage of a callback: one signed POST to the job's callback_url.

    `webhook-id` is the callback job's id, the same on every retry; the body is the
    contract's {"type", "timestamp", "data": {"id", "kind", "status"}}.
    """
    payload, url = run.payload, run.job["callback_url"]
    data = {"id": payload["job_id"], "kind": payload["kind"], "status": payload["status"]}
    body = event_body(payload["type"], data, run.job["created_at"])
    send = _webhook_sender(run, lambda _url: body, await _tenant_secrets(run), lambda _url: str(run.job_id))
    delay = retry_delay(run)
    try:
        delivery = await deliver_once(run, "webhook", url, send, final=delay is None)
    except TransientError as error:
        if delay is None:
            raise PermanentError(f"{error.message} (gave up after {run.attempt} tries)", type=error.type) from None
        raise TransientError(error.message, type=error.type, retry_after=max(delay, error.retry_after or 0.0)) from None
    return {"url": url, "webhook_id": delivery.message_id, "job_id": payload["job_id"], "type": payload["type"]}


def notification_tries(settings: Settings) -> int:
    """Enough tries for the webhook retry schedule (the first try plus one per delay)."""
    return max(NOTIFICATION_MAX_TRIES, len(settings.webhook_retry_schedule) + 1)


NOTIFICATION_PIPELINE = Pipeline(
    "notification",
    (Stage("deliver", notify),),
    timeout=NOTIFICATION_TIMEOUT,
    tries=notification_tries,
    description="Send an email, SMS, push or signed webhook from a template to one recipient or many.",
    endpoint="/v1/notifications",
)
CALLBACK_PIPELINE = Pipeline(
    callbacks.KIND,
    (Stage("deliver", call_back),),
    timeout=CALLBACK_TIMEOUT,
    tries=10,
    description="Deliver the signed callback of a job that ended to its callback_url.",
    endpoint="callback_url",  # made by the service when a job with a callback_url ends
)
