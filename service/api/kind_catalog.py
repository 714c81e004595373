"""The kinds the workers published (`service.ledger.kinds`), as the API process holds them.

Reading the `kinds` table on every `POST /v1/jobs` would cost a query per job, so the
table is held for `MAX_AGE_SECONDS` at most: a kind republished with another schema is
judged by its new one within that time. A name the held copy does not know is looked up
again at once (one read for the requests that miss together), so a kind published a
moment ago is accepted as soon as its worker has started. Each kind's input schema is compiled once
(Draft 2020-12, what pydantic's `model_json_schema()` writes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from jsonschema import Draft202012Validator

from service import ledger
from service.databases.database import Database
from service.jobs import KindSpec

MAX_AGE_SECONDS = 2.0


@dataclass(frozen=True)
class PublishedKind:
    description: ledger.KindDescription
    validator: Draft202012Validator

    @property
    def spec(self) -> KindSpec:
        """What the core needs to create this kind's jobs."""
        kind = self.description
        return KindSpec(
            kind.name, tries=kind.tries, timeout=kind.timeout, queue=kind.queue, concurrency=kind.concurrency
        )


class KindCatalog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._kinds: dict[str, PublishedKind] = {}
        self._loaded_at = -float("inf")
        self._loading: asyncio.Future[None] | None = None

    async def all(self) -> Mapping[str, PublishedKind]:
        """Every published kind by name, at most `MAX_AGE_SECONDS` old."""
        if time.monotonic() - self._loaded_at > MAX_AGE_SECONDS:
            await self._refresh()
        return self._kinds

    async def get(self, name: str) -> PublishedKind | None:
        """The kind named so, looked up again if the held copy does not know it."""
        if name not in await self.all():
            await self._refresh()
        return self._kinds.get(name)

    async def _refresh(self) -> None:
        """One read of the table for all the requests that need it at the same time."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(lambda _: setattr(self, "_loading", None))
        await asyncio.shield(self._loading)

    async def _load(self) -> None:
        async with self.db.write() as conn:  # the primary: a kind just published is there
            described = await ledger.list_kinds(conn)
        kinds: dict[str, PublishedKind] = {}
        for kind in described:
            held = self._kinds.get(kind.name)
            kinds[kind.name] = (
                held
                if held is not None and held.description == kind
                else PublishedKind(kind, Draft202012Validator(kind.input_schema))
            )
        self._kinds = kinds
        self._loaded_at = time.monotonic()
