"""Push notifications through FCM HTTP v1 or OneSignal, whichever is configured.

FCM has no idempotency key: the at-most-once guarantee for FCM rests on the caller's
delivery log. OneSignal dedupes on `idempotency_key`, which must be a UUID (v3 or v4 in
its docs), so ours is a v3 UUID derived from the delivery key.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from service.config import Settings
from service.errors import PermanentError, TransientError

from .channels import Delivery, push_provider, require_channel
from .provider_http import json_body, post, refusal, secret_value
from .templates import Rendered, RenderedShort, render_short, validate

ALIAS_PREFIX = "external_id:"
IDEMPOTENCY_NAMESPACE = uuid.UUID("6b1f4d1e-8f0c-4f7a-9a43-7d1c2b7e5a10")
FCM_RECIPIENT_ERRORS = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
FCM_AUTH_ERRORS = {"THIRD_PARTY_AUTH_ERROR", "UNAUTHENTICATED", "PERMISSION_DENIED"}


def _data_strings(template: str, fields: dict[str, Any]) -> dict[str, str]:
    """The message's `data` map: FCM takes only string values, so scalars only, as text."""
    strings = {name: str(value) for name, value in fields.items() if isinstance(value, (str, int, float))}
    return {"template": template, **strings}


def _fcm_error(response: httpx.Response) -> PermanentError | TransientError:
    error = json_body(response).get("error") or {}
    codes = {error.get("status")} | {
        detail.get("errorCode") for detail in error.get("details", []) if isinstance(detail, dict)
    }
    detail = f"{error.get('message', response.reason_phrase)} ({', '.join(sorted(c for c in codes if c))})"
    return refusal(
        response,
        "FCM",
        detail,
        recipient="FCM: the device token is not registered" if codes & FCM_RECIPIENT_ERRORS else None,
        credentials=bool(codes & FCM_AUTH_ERRORS),
    )


async def send_fcm(
    settings: Settings,
    *,
    to: str,
    message: RenderedShort,
    data: dict[str, str],
    client: httpx.AsyncClient | None = None,
) -> Delivery:
    token = secret_value(settings.fcm_access_token)
    response = await post(
        client,
        "FCM",
        f"{settings.fcm_base_url.rstrip('/')}/v1/projects/{settings.fcm_project_id}/messages:send",
        json={"message": {"token": to, "notification": {"title": message.title, "body": message.body}, "data": data}},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 200:
        raise _fcm_error(response)
    return Delivery(channel="push", provider="fcm", recipient=to, message_id=json_body(response).get("name", ""))


def onesignal_idempotency_key(key: str) -> str:
    return str(uuid.uuid3(IDEMPOTENCY_NAMESPACE, key))


def _onesignal_target(to: str) -> dict[str, Any]:
    """`external_id:<id>` targets a user alias; anything else is a subscription id."""
    if to.startswith(ALIAS_PREFIX):
        return {"include_aliases": {"external_id": [to.removeprefix(ALIAS_PREFIX)]}, "target_channel": "push"}
    return {"include_subscription_ids": [to]}


def _onesignal_errors(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        return "; ".join(map(str, errors))
    return str(errors) if errors else ""


async def send_onesignal(
    settings: Settings,
    *,
    to: str,
    message: RenderedShort,
    data: dict[str, str],
    key: str,
    client: httpx.AsyncClient | None = None,
) -> Delivery:
    api_key = secret_value(settings.onesignal_api_key)
    response = await post(
        client,
        "OneSignal",
        f"{settings.onesignal_base_url.rstrip('/')}/notifications",
        json={
            "app_id": settings.onesignal_app_id,
            **_onesignal_target(to),
            "headings": {"en": message.title},
            "contents": {"en": message.body},
            "data": data,
            "idempotency_key": onesignal_idempotency_key(key),
        },
        headers={"Authorization": f"Key {api_key}"},
    )
    body = json_body(response)
    detail = _onesignal_errors(body) or response.reason_phrase
    if response.status_code != 200:
        raise refusal(response, "OneSignal", detail)
    if not body.get("id"):  # 200 with no id: nobody to send to
        raise PermanentError(f"OneSignal sent nothing: {detail}", type="invalid_recipient")
    return Delivery(channel="push", provider="onesignal", recipient=to, message_id=body["id"])


async def send_push(
    settings: Settings,
    *,
    to: str,
    template: str,
    data: dict[str, Any],
    key: str,
    client: httpx.AsyncClient | None = None,
    rendered: Rendered | None = None,
) -> Delivery:
    """Send the template's title and short text (or the `rendered` ones) to one device token
    (FCM) or subscription; the data map carries what the template was given."""
    require_channel(settings, "push")
    if not to or len(to) > 4096:
        raise PermanentError("a push recipient is a device token or subscription id", type="invalid_recipient")
    if isinstance(rendered, RenderedShort):
        message, payload = rendered, _data_strings(template, data)
    else:
        message, payload = render_short(template, data), _data_strings(template, validate(template, data))
    if push_provider(settings) == "fcm":
        return await send_fcm(settings, to=to, message=message, data=payload, client=client)
    return await send_onesignal(settings, to=to, message=message, data=payload, key=key, client=client)
