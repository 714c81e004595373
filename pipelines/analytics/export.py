"""The `export` pipeline: a tenant's events, daily counts or jobs as one CSV in storage.

Rows stream from a server-side cursor through the csv module into a storage writer, a
few thousand at a time, so memory stays flat however many rows there are; on S3 the
file goes up as a multipart upload. A failed or retried attempt starts the file over.

What a tenant sent comes back as text a spreadsheet will not run: a cell starting with
`=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP's advice on CSV
injection). Events carry no id: theirs is a counter shared by all tenants, whose growth
between two exports would tell one tenant how many events the others sent.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from conveyor.kinds import Pipeline, Stage
from pipelines.analytics.aggregate import day_start
from pipelines.job_run import JobRun
from service.storage import tenant_prefix

KIND = "export"
FLUSH_ROWS = 2000
CONTENT_TYPE = "text/csv; charset=utf-8"
MAX_RANGE_DAYS = 366


def range_error(first_day: date, last_day: date) -> str | None:
    """Why whole UTC days `from`..`to` (both included) are not a range we serve, if they are not."""
    if last_day < first_day:
        return "to must not be before from"
    if (last_day - first_day).days >= MAX_RANGE_DAYS:
        return f"the range may span at most {MAX_RANGE_DAYS} days"
    return None


class ExportInput(BaseModel):
    """What to export: a dataset over whole UTC days `from`..`to`, both included."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dataset: Literal["events", "stats", "jobs"]
    first_day: date = Field(alias="from")
    last_day: date = Field(alias="to")

    @field_validator("last_day")
    @classmethod
    def _served_range(cls, last_day: date, info: ValidationInfo) -> date:
        first_day = info.data.get("first_day")
        if first_day is not None and (error := range_error(first_day, last_day)):
            raise PydanticCustomError("export_range", error)
        if last_day == date.max:  # the export runs to the end of `to`, which is in year 10000
            raise PydanticCustomError("export_range", f"must be before {date.max.isoformat()}")
        return last_day


@dataclass(frozen=True)
class Dataset:
    columns: tuple[str, ...]
    query: str  # $1 tenant, $2..$3 the range (dates, or the instants they begin)
    by_day: bool = False  # the range is dates (both included) rather than instants


DATASETS = {
    "events": Dataset(
        ("ts", "type", "user_id", "properties", "received_at"),
        """
        SELECT ts, type, user_id, properties::text, received_at FROM events
        WHERE tenant_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, id
        """,
    ),
    "stats": Dataset(
        ("day", "type", "count"),
        """
        SELECT day, type, count FROM event_counts
        WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day, type
        """,
        by_day=True,
    ),
    "jobs": Dataset(
        ("id", "kind", "status", "attempts", "error_type", "created_at", "started_at", "finished_at"),
        """
        SELECT id, kind, status, attempts, error->>'type', created_at, started_at, finished_at FROM jobs
        WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, id
        """,
    ),
}


def export_key(tenant_id: object, job_id: object) -> str:
    return f"{tenant_prefix(tenant_id)}exports/{job_id}.csv"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value  # shown as text, never evaluated as a formula
    return value


def bounds(dataset: Dataset, export: ExportInput) -> tuple[Any, Any]:
    if dataset.by_day:
        return export.first_day, export.last_day
    return day_start(export.first_day), day_start(export.last_day + timedelta(days=1))


async def write_csv(run: JobRun, input: ExportInput) -> dict:
    dataset = DATASETS[input.dataset]
    key = export_key(run.job["tenant_id"], run.job_id)
    writer = run.resources.storage.writer(key, CONTENT_TYPE)
    buffer = io.StringIO()
    rows = csv.writer(buffer)
    rows.writerow(dataset.columns)
    count = 0

    async def flush() -> None:
        await writer.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()

    try:
        async with run.resources.db.read() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            async for record in conn.cursor(
                dataset.query, run.job["tenant_id"], *bounds(dataset, input), prefetch=FLUSH_ROWS
            ):
                rows.writerow([cell(value) for value in record.values()])
                count += 1
                if count % FLUSH_ROWS == 0:
                    await flush()
        await flush()
        size = await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    name = f"{input.dataset}-{input.first_day}-{input.last_day}.csv"
    return {"rows": count, "bytes": size, "key": key, "name": name, "content_type": CONTENT_TYPE}


EXPORT_PIPELINE = Pipeline(
    KIND,
    (Stage("export", write_csv),),
    input=ExportInput,
    timeout=1800.0,
    tries=3,
    description="Write a tenant's analytics (events or daily counts) for a date range as CSV.",
    endpoint="/v1/exports",
)
