"""When a schedule fires: a 5-field `cron` read at wall-clock time in an IANA time zone,
or `every` so many seconds. Pure functions of their arguments, no clock of their own.

Daylight-saving changes are cronsim's (Debian cron's rules): a time the clocks skip fires
once, at the moment they jump (a 02:30 cron on a spring-forward day in New York runs at
03:00), and a time the clocks pass twice fires once, the first time. `every` counts real
seconds, so it knows nothing of time zones.

After an outage the ticks missed are not each made up: `following` is the first tick after
both the one that was due and now, so one late job stands for all of them.

The built-in schedules' settings (`SCHEDULE_CLEANUP=daily 03:30`, …) are a shorter
spelling of the same cadences (service/config.py `cadence_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CRON_FIELDS = 5  # m h dom mon dow; cronsim would also take a leading seconds field
MAX_EVERY = 366 * 24 * 3600  # seconds
CHECKED_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # a cron is valid if it fires after this


class InvalidCadence(ValueError):
    """What is wrong with a cadence, and the field (`cron`, `every`, `timezone`) it is in."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Cadence:
    """Exactly one of `cron` and `every`, and the zone `cron` is read in."""

    cron: str | None = None
    every: int | None = None
    timezone: str = "UTC"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone so named, or ValueError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris or UTC") from None


def check(cadence: Cadence) -> None:
    """InvalidCadence naming what is wrong with `cadence`, if anything."""
    if (cadence.cron is None) == (cadence.every is None):
        raise InvalidCadence("cron", "give exactly one of cron and every")
    try:
        zone(cadence.timezone)
    except ValueError as exc:
        raise InvalidCadence("timezone", str(exc)) from None
    if cadence.every is not None and not 1 <= cadence.every <= MAX_EVERY:
        raise InvalidCadence("every", f"must be 1 to {MAX_EVERY} seconds")
    if cadence.cron is not None:
        if len(cadence.cron.split()) != CRON_FIELDS:
            raise InvalidCadence("cron", "must have 5 fields: minute hour day-of-month month day-of-week")
        try:
            _next_cron(cadence, CHECKED_FROM)
        except (CronSimError, StopIteration) as exc:
            raise InvalidCadence("cron", f"is not a valid cron expression ({exc or 'it never fires'})") from None


def first(cadence: Cadence, now: datetime) -> datetime:
    """The first tick of a schedule made (or resumed, or changed) at `now`."""
    if cadence.every is not None:
        return now + timedelta(seconds=cadence.every)
    return _next_cron(cadence, now)


def following(cadence: Cadence, due: datetime, now: datetime) -> datetime:
    """The tick after `due`, fired at `now`: the first one after both, so the ticks an
    outage missed make one job, not one each. `every` keeps its beat (due + k·every)."""
    if cadence.every is not None:
        step = timedelta(seconds=cadence.every)
        return due + step * (max(now - due, timedelta(0)) // step + 1)
    return _next_cron(cadence, max(due, now))


def upcoming(cadence: Cadence, next_run_at: datetime, count: int = 3) -> list[datetime]:
    """`count` ticks from `next_run_at` on, as a schedule's answers show them."""
    ticks = [next_run_at]
    while len(ticks) < count:
        ticks.append(following(cadence, ticks[-1], ticks[-1]))
    return ticks


def _next_cron(cadence: Cadence, after: datetime) -> datetime:
    """The first time strictly after `after` that `cadence.cron` names on its zone's clocks, in UTC."""
    assert cadence.cron is not None
    local = after.astimezone(zone(cadence.timezone))
    return next(CronSim(cadence.cron, local)).astimezone(UTC)
