"""The kinds the workers run, as they describe them, for an API that never imports their code.

Every worker publishes the description of each kind it runs when it starts (`publish`);
the API reads them back (`list_kinds`) to validate a job's input against its kind's JSON
Schema and to know its tries, timeout and queue. A description's `version` is a hash of
its content, so a worker republishing what is already there writes nothing.

Rolling deploys: workers of two releases may describe the same kind differently; the
description of the worker that started last wins (and is what the API validates against),
until another worker starts. Deploy a kind's new input schema so the old workers' input is
still accepted by it, or finish the roll-out before submitting input only the new one takes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import asyncpg


@dataclass(frozen=True)
class KindDescription:
    """What a worker says of a kind: its input's JSON Schema (pydantic's
    `model_json_schema()`), its stages, the kind's rules, and `endpoint`, the route that
    creates its jobs when that is not `POST /v1/jobs` (a document comes with an upload)."""

    name: str
    description: str
    input_schema: dict
    stages: tuple[str, ...]
    tries: int
    timeout: float
    queue: str
    concurrency: int | None = None
    endpoint: str | None = None

    @property
    def version(self) -> str:
        """A hash of everything described: equal descriptions, equal versions."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


COLUMNS = "name, description, input_schema, stages, tries, timeout, queue, concurrency, endpoint"


async def publish(conn: asyncpg.Connection, kinds: Sequence[KindDescription], published_by: str) -> None:
    """Record `kinds` as `published_by` (a worker) describes them, in one statement; a kind
    whose description is unchanged is not written again."""
    records = [{**asdict(kind), "stages": list(kind.stages), "version": kind.version} for kind in kinds]
    await conn.execute(
        f"""
        INSERT INTO kinds AS k ({COLUMNS}, version, published_by)
        SELECT d.name, d.description, d.input_schema, ARRAY(SELECT jsonb_array_elements_text(d.stages)),
               d.tries, d.timeout, d.queue, d.concurrency, d.endpoint, d.version, $2
        FROM jsonb_to_recordset($1::jsonb) AS d(
            name text, description text, input_schema jsonb, stages jsonb, tries integer,
            timeout double precision, queue text, concurrency integer, endpoint text, version text
        )
        ON CONFLICT (name) DO UPDATE SET
            description = excluded.description, input_schema = excluded.input_schema,
            stages = excluded.stages, tries = excluded.tries, timeout = excluded.timeout,
            queue = excluded.queue, concurrency = excluded.concurrency, endpoint = excluded.endpoint,
            version = excluded.version, published_by = excluded.published_by, published_at = now()
        WHERE k.version IS DISTINCT FROM excluded.version
        """,
        records,
        published_by,
    )


async def list_kinds(conn: asyncpg.Connection) -> list[KindDescription]:
    """Every published kind, by name."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM kinds ORDER BY name")
    return [KindDescription(**{**dict(row), "stages": tuple(row["stages"])}) for row in rows]
