"""Configuration, read once from the environment and validated before anything starts.

Every variable of the public contract lives here. Unset means the embedded default; a bad
value stops the process with a message naming the variable, never a stack trace later.
Secrets are `SecretStr` (or URLs whose passwords `mask` hides) so they never reach a log.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict, overload
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.databases import pgurl

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_ADMIN_KEY_CHARS = 32


@overload
def mask(url: str) -> str: ...
@overload
def mask(url: None) -> None: ...
def mask(url: str | None) -> str | None:
    """A URL with its password replaced by `***`, safe to log or show in an error."""
    if not url:
        return url
    return re.sub(r"(?<=://)([^:/@]*):[^@/]*@", r"\1:***@", url)


def _split(value: str | Iterable[str] | None) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value or [])


CommaList = Annotated[list[str], NoDecode]
RATE = re.compile(r"^(?P<channel>email|sms|push|webhook)=(?P<rate>\d+(\.\d+)?)(/(?P<burst>[1-9]\d*))?$")

_EVERY = re.compile(r"every (\d+)([sm])")
_HOURLY = re.compile(r"hourly :(\d\d)")
_DAILY = re.compile(r"daily (\d\d):(\d\d)")


class CadenceFields(TypedDict, total=False):
    """A cadence as a schedule's fields: one of them."""

    cron: str
    every: int


def cadence_fields(setting: str) -> CadenceFields | None:
    """A built-in schedule's setting as the fields of a schedule (`cron` in UTC, or
    `every` seconds: service/ledger/schedule_times.py `Cadence`); None for `off`.

    A setting is `every Ns` or `every Nm` (N divides 60, so the ticks fall on the same
    seconds or minutes of every hour), `hourly :MM`, or `daily HH:MM` (UTC).
    """
    text = setting.strip().lower()
    if text == "off":
        return None
    if match := _EVERY.fullmatch(text):
        step, unit = int(match[1]), match[2]
        if not 0 < step <= 60 or 60 % step:
            raise ValueError(f"{setting!r}: the step must divide 60")
        if unit == "s":
            return {"every": step}
        return {"cron": "0 * * * *" if step == 60 else f"*/{step} * * * *"}
    if (match := _HOURLY.fullmatch(text)) and int(match[1]) < 60:
        return {"cron": f"{int(match[1])} * * * *"}
    if (match := _DAILY.fullmatch(text)) and int(match[1]) < 24 and int(match[2]) < 60:
        return {"cron": f"{int(match[2])} {int(match[1])} * * *"}
    raise ValueError(f"{setting!r} is not a cadence: use 'every 2s', 'every 5m', 'hourly :05', 'daily 03:30' or 'off'")


@dataclass(frozen=True)
class PoolSettings:
    """One server's connection pool: the primary's from `DB_*`, every replica's from `DB_READ_*`."""

    size: int
    overflow: int
    recycle: float  # seconds an idle connection is kept
    connect_timeout: float
    statement_timeout: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # -- where things live ---------------------------------------------------------------
    database_url: str = "postgresql://postgres@127.0.0.1:5432/conveyor"
    database_url_read: CommaList = Field(default_factory=list)
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = "file://./.conveyor/storage"
    s3_endpoint_url: str | None = None
    region: str | None = None

    # -- database pools (primary and each replica) --------------------------------------
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_recycle: float = Field(default=300.0, gt=0)
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_statement_timeout: float = Field(default=15.0, gt=0)
    db_read_pool_size: int = Field(default=10, ge=1)
    db_read_max_overflow: int = Field(default=10, ge=0)
    db_read_pool_recycle: float = Field(default=300.0, gt=0)
    db_read_connect_timeout: float = Field(default=1.0, gt=0)
    db_read_statement_timeout: float = Field(default=2.0, gt=0)
    replica_max_lag_bytes: int = Field(default=16 * MiB, ge=0)
    replica_quarantine_seconds: float = Field(default=5.0, gt=0)
    read_your_writes_ttl: float = Field(default=30.0, gt=0)

    # -- uploads -------------------------------------------------------------------------
    max_upload_bytes: int | None = Field(default=None, gt=0)
    max_document_bytes: int = Field(default=50 * MiB, gt=0)
    max_video_bytes: int = Field(default=2 * GiB, gt=0)
    max_document_pages: int = Field(default=500, gt=0)
    max_document_ocr_pixels: int = Field(default=2_000_000_000, gt=0)  # ≈ 230 A4 pages at 300 dpi
    max_page_text_chars: int = Field(default=50_000, gt=0)
    max_document_text_chars: int = Field(default=2_000_000, gt=0)
    max_result_text_chars: int = Field(default=16_384, ge=0)  # the Job's `result.text`; the rest: /text

    # -- document pipeline ---------------------------------------------------------------
    ocr_provider: Literal["tesseract", "textract"] = "tesseract"
    document_reader_concurrency: int | None = Field(default=None, gt=0)  # None: 4 per core
    textract_endpoint_url: str | None = None
    textract_poll_deadline: float = Field(default=900.0, gt=0)
    textract_poll_interval: float = Field(default=1.0, gt=0)
    textract_max_poll_interval: float = Field(default=20.0, gt=0)
    textract_sns_topic_arn: str | None = None
    textract_sns_role_arn: str | None = None
    textract_sqs_queue_url: str | None = None
    sqs_endpoint_url: str | None = None
    llm_provider: Literal["rules", "openai", "gemini"] = "rules"
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_timeout: float = Field(default=60.0, gt=0)
    llm_rate_per_minute: int = Field(default=500, gt=0)

    # -- video pipeline ------------------------------------------------------------------
    video_max_duration: float = Field(default=4 * 3600.0, gt=0)
    video_max_dimension: int = Field(default=7680, gt=0)
    video_max_fps: float = Field(default=240.0, gt=0)
    video_max_streams: int = Field(default=16, gt=0)
    video_timeout_seconds: float = Field(default=30 * 60.0, gt=0, allow_inf_nan=False)  # one attempt
    transcode_concurrency: int | None = Field(default=None, gt=0)

    # -- notifications -------------------------------------------------------------------
    smtp_url: str | None = None
    smtp_from: str = "Conveyor <no-reply@localhost>"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    fcm_project_id: str | None = None
    fcm_access_token: SecretStr | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    onesignal_app_id: str | None = None
    onesignal_api_key: SecretStr | None = None
    onesignal_base_url: str = "https://api.onesignal.com"
    callback_allowed_hosts: CommaList = Field(default_factory=list)
    webhook_timeout: float = Field(default=15.0, gt=0)
    webhook_retry_schedule: CommaList = Field(
        default_factory=lambda: ["5", "300", "1800", "7200", "18000", "36000", "50400", "72000", "86400"]
    )
    # Per-channel send rates shared by all workers, overriding the defaults: "sms=10/20"
    # is 10 messages a second with bursts of 20 (the burst is optional).
    notification_rates: CommaList = Field(default_factory=list)

    # -- queue and worker ----------------------------------------------------------------
    conveyor_kinds: CommaList = Field(default_factory=list)  # the app's modules declaring kinds, e.g. "myapp.jobs"
    queue_name: str = "conveyor"
    kind_queues: CommaList = Field(default_factory=list)  # e.g. "video=conveyor:video"
    worker_max_jobs: int = Field(default=500, gt=0)
    worker_poll_delay: float = Field(default=0.02, gt=0)
    worker_park_after: float = Field(default=0.25, gt=0)
    worker_heartbeat_seconds: float = Field(default=2.0, gt=0)
    worker_dead_after_seconds: float = Field(default=6.0, gt=0)
    worker_shutdown_grace: float = Field(default=20.0, ge=0)
    work_dir: str | None = None  # where jobs keep temporary files; unset: the system's temp dir
    reconcile_after_seconds: float = Field(default=10.0, gt=0)
    job_retention_days: int = Field(default=30, gt=0)
    tenant_max_queued_jobs: int = Field(default=10_000, gt=0)
    workflow_max_fanout: int = Field(default=10_000, gt=0)  # jobs one for_each step may make

    # -- analytics and retention ---------------------------------------------------------
    event_retention_days: int = Field(default=400, gt=0)
    aggregate_recent_days: int = Field(default=7, gt=0)  # days the daily aggregation recomputes
    idempotency_key_ttl_hours: int = Field(default=24, gt=0)
    cleanup_batch_size: int = Field(default=500, gt=0)
    membership_notice_days: int = Field(default=7, gt=0)

    # -- the built-in schedules' cadences (pipelines/schedule.py); times are UTC ---------
    schedule_reminders: str = "every 5m"
    schedule_memberships: str = "daily 08:00"
    schedule_cleanup: str = "daily 03:30"
    schedule_aggregate_hourly: str = "hourly :05"
    schedule_aggregate_daily: str = "daily 00:20"
    schedule_prune_workers: str = "hourly :00"

    # -- API -----------------------------------------------------------------------------
    rate_limit_per_minute: int = Field(default=6000, gt=0)
    auth_failures_per_minute: int = Field(default=60, gt=0)  # per client address
    # A `:` comment this often on a quiet event stream, so proxies do not close it as idle.
    event_stream_keepalive_seconds: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    admin_key: SecretStr | None = None
    public_url: str | None = None

    # -- operations ----------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = True
    metrics_port: int | None = None
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    sentry_dsn: SecretStr | None = None

    @field_validator(
        "database_url_read",
        "callback_allowed_hosts",
        "conveyor_kinds",
        "kind_queues",
        "webhook_retry_schedule",
        "notification_rates",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> list[str]:
        return _split(value)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _delays(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ok = 0 <= float(value) < float("inf")
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{value!r} is not a number of seconds")
        return values

    @field_validator("notification_rates")
    @classmethod
    def _rates(cls, values: list[str]) -> list[str]:
        for value in values:
            match = RATE.match(value)
            if not match or float(match["rate"]) <= 0:
                raise ValueError(f"{value!r} is not channel=per_second[/burst], e.g. sms=10/20")
        return values

    @field_validator(
        "schedule_reminders",
        "schedule_memberships",
        "schedule_cleanup",
        "schedule_aggregate_hourly",
        "schedule_aggregate_daily",
        "schedule_prune_workers",
    )
    @classmethod
    def _cadence(cls, value: str) -> str:
        cadence_fields(value)
        return value

    @field_validator("textract_max_poll_interval")
    @classmethod
    def _not_below_the_first_interval(cls, value: float, info: ValidationInfo) -> float:
        if value < info.data.get("textract_poll_interval", 0):
            raise ValueError("must not be below TEXTRACT_POLL_INTERVAL")
        return value

    @field_validator("textract_sqs_queue_url")
    @classmethod
    def _a_whole_notification_channel(cls, value: str | None, info: ValidationInfo) -> str | None:
        channel = (info.data.get("textract_sns_topic_arn"), info.data.get("textract_sns_role_arn"), value)
        if any(channel) and not all(channel):
            raise ValueError("TEXTRACT_SNS_TOPIC_ARN, TEXTRACT_SNS_ROLE_ARN and TEXTRACT_SQS_QUEUE_URL go together")
        return value

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # empty is unset: the dashboard stays off
        if len(value.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_ADMIN_KEY_CHARS} characters"
                " (e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        pgurl.primary_session(value)  # a bad target_session_attrs stops the process at start, not each request
        return value

    @field_validator("database_url_read")
    @classmethod
    def _postgres_urls(cls, values: list[str]) -> list[str]:
        for value in values:
            cls._postgres_url(value)
        return values

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
            raise ValueError("must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "s3" and parts.netloc:
            return value
        if parts.scheme == "file" and (parts.netloc or parts.path):
            return value
        raise ValueError("must be s3://bucket/prefix or file:///path")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in ("smtp", "smtps", "file"):
            raise ValueError("must be an smtp:// or smtps:// URL (or file:///dir, a local mail sink)")
        return value

    def upload_limit(self, kind: str) -> int:
        """The byte limit for one upload of this kind (`MAX_UPLOAD_BYTES` overrides both)."""
        if self.max_upload_bytes:
            return self.max_upload_bytes
        return self.max_video_bytes if kind == "video" else self.max_document_bytes

    @property
    def primary_pool(self) -> PoolSettings:
        return PoolSettings(
            self.db_pool_size,
            self.db_max_overflow,
            self.db_pool_recycle,
            self.db_connect_timeout,
            self.db_statement_timeout,
        )

    @property
    def replica_pool(self) -> PoolSettings:
        return PoolSettings(
            self.db_read_pool_size,
            self.db_read_max_overflow,
            self.db_read_pool_recycle,
            self.db_read_connect_timeout,
            self.db_read_statement_timeout,
        )

    def channel_rates(self) -> dict[str, tuple[float, int | None]]:
        """`NOTIFICATION_RATES` as {channel: (per second, burst or None)}."""
        rates = {}
        for entry in self.notification_rates:
            match = RATE.match(entry)
            assert match  # validated above
            burst = match["burst"]
            rates[match["channel"]] = (float(match["rate"]), int(burst) if burst else None)
        return rates

    def queue_for(self, kind: str, default: str | None = None) -> str:
        """The arq queue a job of this kind goes to (`KIND_QUEUES=video=conveyor:video,…`);
        else `default` (the kind's own), else `QUEUE_NAME`."""
        for route in self.kind_queues:
            name, _, queue = route.partition("=")
            if name.strip() == kind and queue.strip():
                return queue.strip()
        return default or self.queue_name


class ConfigurationError(SystemExit):
    """Raised at start for a bad environment: exits with a readable message, no traceback."""


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            lines.append(f"  {name}: {error['msg']}")
        raise ConfigurationError("Invalid configuration:\n" + "\n".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
