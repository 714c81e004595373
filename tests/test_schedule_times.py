"""When a schedule fires (service/ledger/schedule_times.py): cron at wall-clock time in its zone
across daylight-saving changes, `every` on its beat, and one catch-up tick after an outage.
Pure: no clock, no servers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.ledger.schedule_times import Cadence, InvalidCadence, check, first, following, upcoming

NEW_YORK = ZoneInfo("America/New_York")


def runs_on(cadence: Cadence, day: date) -> list[datetime]:
    """Every tick whose wall-clock date in New York is `day`, fired one after the other."""
    tick = first(cadence, datetime.combine(day - timedelta(days=1), datetime.min.time(), NEW_YORK))
    runs = []
    while tick.astimezone(NEW_YORK).date() <= day:
        if tick.astimezone(NEW_YORK).date() == day:
            runs.append(tick.astimezone(NEW_YORK))
        tick = following(cadence, tick, tick)
    return runs


@pytest.mark.parametrize("clock", ["30 2 * * *", "30 1 * * *"])
@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)], ids=["spring-forward", "fall-back"])
def test_a_daily_cron_runs_once_on_daylight_saving_days(clock, day):
    cadence = Cadence(cron=clock, timezone="America/New_York")
    runs = runs_on(cadence, day)
    assert len(runs) == 1, runs
    assert len(runs_on(cadence, day + timedelta(days=1))) == 1  # and the day after, at its usual time


def test_the_skipped_half_hour_fires_when_the_clocks_jump_and_other_days_keep_wall_time():
    cadence = Cadence(cron="30 2 * * *", timezone="America/New_York")
    assert runs_on(cadence, date(2026, 3, 8)) == [datetime(2026, 3, 8, 3, 0, tzinfo=NEW_YORK)]
    assert runs_on(cadence, date(2026, 3, 9)) == [datetime(2026, 3, 9, 2, 30, tzinfo=NEW_YORK)]
    # 02:30 is 07:30 UTC in winter and 06:30 UTC in summer: wall-clock time, not UTC
    winter, summer = runs_on(cadence, date(2026, 3, 7))[0], runs_on(cadence, date(2026, 3, 9))[0]
    assert (winter.astimezone(UTC).hour, summer.astimezone(UTC).hour) == (7, 6)


def test_the_repeated_hour_fires_once_the_first_time():
    (run,) = runs_on(Cadence(cron="30 1 * * *", timezone="America/New_York"), date(2026, 11, 1))
    assert run.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not 01:30 EST


def test_missed_ticks_make_one_catch_up_tick():
    cadence = Cadence(cron="*/5 * * * *")
    due = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    back = datetime(2026, 1, 1, 13, 2, tzinfo=UTC)  # twelve ticks were missed
    assert following(cadence, due, back) == datetime(2026, 1, 1, 13, 5, tzinfo=UTC)
    every = Cadence(every=60)
    assert following(every, due, back + timedelta(seconds=30)) == datetime(2026, 1, 1, 13, 3, tzinfo=UTC)
    assert following(every, due, due) == due + timedelta(seconds=60)  # on time: the next beat


def test_upcoming_lists_the_next_ticks_from_the_next_one():
    cadence = Cadence(cron="0 9 * * MON", timezone="Europe/Paris")
    start = first(cadence, datetime(2026, 3, 25, tzinfo=UTC))
    assert [tick.astimezone(ZoneInfo("Europe/Paris")).isoformat() for tick in upcoming(cadence, start)] == [
        "2026-03-30T09:00:00+02:00",
        "2026-04-06T09:00:00+02:00",
        "2026-04-13T09:00:00+02:00",
    ]


@pytest.mark.parametrize(
    ("cadence", "field"),
    [
        (Cadence(), "cron"),
        (Cadence(cron="* * * * *", every=5), "cron"),
        (Cadence(cron="* * * *"), "cron"),
        (Cadence(cron="* * * * * *"), "cron"),
        (Cadence(cron="61 * * * *"), "cron"),
        (Cadence(cron="0 0 31 2 *"), "cron"),
        (Cadence(every=0), "every"),
        (Cadence(every=5, timezone="Mars/Olympus_Mons"), "timezone"),
        (Cadence(cron="* * * * *", timezone="../etc/passwd"), "timezone"),
    ],
)
def test_invalid_cadences_name_their_field(cadence, field):
    with pytest.raises(InvalidCadence) as refused:
        check(cadence)
    assert refused.value.field == field
