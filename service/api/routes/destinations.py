"""Where a request's URLs may send to, judged before it is accepted: webhook recipients
and reminder destinations, and uploads' `callback_url`.

Each is a 422 naming its field when the URL is malformed or its host is inside our
network (loopback, private, metadata; pipelines/notifications/ssrf.py), unless
CALLBACK_ALLOWED_HOSTS lets it through. This is the early answer; the worker checks
again inside every connection, since DNS may answer differently later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import urlsplit

from pipelines.notifications.ssrf import check_destination
from service.api.problems import Problem
from service.api.validation import refused
from service.errors import PermanentError, TransientError

CHECK_SECONDS = 5.0


async def check_destinations(destinations: Iterable[tuple[str, str]], allowed_hosts: list[str]) -> None:
    """Check (field, url) pairs: each host resolved once, all at once. A host that does
    not resolve right now, or not within CHECK_SECONDS, is not refused: the worker
    checks it again when it connects, and retries."""
    first: dict[tuple[str | None, int | None, str], tuple[str, str]] = {}
    for field, url in destinations:
        parts = urlsplit(url)
        first.setdefault((parts.hostname, parts.port, parts.scheme), (field, url))

    async def check(field: str, url: str) -> None:
        try:
            await check_destination(url, allowed_hosts)
        except TransientError:
            pass
        except PermanentError as error:
            raise refused(field, error) from None

    try:
        async with asyncio.timeout(CHECK_SECONDS):
            async with asyncio.TaskGroup() as group:
                for field, url in first.values():
                    group.create_task(check(field, url))
    except* Problem as problems:
        raise problems.exceptions[0] from None
    except* TimeoutError:
        pass  # slow DNS: leave it to the worker's check at connect time


async def check_callback_url(url: str, allowed_hosts: list[str]) -> None:
    """An upload's `callback_url`, checked as webhooks are."""
    await check_destinations([("callback_url", url)], allowed_hosts)
