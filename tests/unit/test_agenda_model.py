"""Slots from a weekly pattern, closures and openings, in the clinic's zone, across the changes
of time (Europe/Paris: 29 March and 25 October 2026)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretum.agenda.model import (
    Availability,
    Closure,
    InvalidAvailability,
    Modality,
    Opening,
    WeeklyHours,
    local_day_bounds,
    slots,
)

PARIS = ZoneInfo("Europe/Paris")
MORNINGS = Availability(
    weekly=tuple(WeeklyHours(d, time(9), time(12), 30, Modality.VIDEO) for d in range(7))
)
NIGHTS = Availability(weekly=(WeeklyHours(6, time(1), time(4), 30),))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_week_spanning_the_march_change_keeps_the_wall_clock() -> None:
    found = slots("d1", MORNINGS, date(2026, 3, 27), date(2026, 3, 31), PARIS)
    starts = {s.start for s in found}
    # 09:00 in Paris is 08:00 UTC before the change, 07:00 UTC after it
    assert utc(2026, 3, 28, 8) in starts and utc(2026, 3, 28, 7) not in starts
    assert utc(2026, 3, 30, 7) in starts and utc(2026, 3, 30, 6) not in starts
    assert all(s.start.astimezone(PARIS).time() >= time(9) for s in found)
    assert all(s.end.astimezone(PARIS).time() <= time(12) for s in found)
    assert len(found) == 5 * 6  # six slots a morning, five days (Sunday 29 included)
    assert all(s.end - s.start == timedelta(minutes=30) for s in found)


def test_a_week_spanning_the_october_change_keeps_the_wall_clock() -> None:
    found = slots("d1", MORNINGS, date(2026, 10, 23), date(2026, 10, 27), PARIS)
    assert found[0].start == utc(2026, 10, 23, 7)  # 09:00 CEST
    assert found[-1].start == utc(2026, 10, 27, 10, 30)  # 11:30 CET
    assert [s.start.astimezone(PARIS).hour for s in found].count(9) == 10


def test_the_skipped_hour_is_not_offered_and_the_repeated_one_once() -> None:
    spring = slots("d1", NIGHTS, date(2026, 3, 29), date(2026, 3, 29), PARIS)
    walls = [s.start.astimezone(PARIS).strftime("%H:%M") for s in spring]
    assert walls == ["01:00", "01:30", "03:00", "03:30"]  # 02:00-03:00 does not exist
    assert all(s.end - s.start == timedelta(minutes=30) for s in spring)
    autumn = slots("d1", NIGHTS, date(2026, 10, 25), date(2026, 10, 25), PARIS)
    walls = [s.start.astimezone(PARIS).strftime("%H:%M") for s in autumn]
    assert walls == ["01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    assert len({s.start for s in autumn}) == 6
    assert autumn[2].start == utc(2026, 10, 25, 0)  # the first 02:00 (CEST)


def test_closures_openings_and_validity() -> None:
    availability = Availability(
        weekly=(
            WeeklyHours(0, time(9), time(10), 20, valid_from=date(2026, 3, 9)),
            WeeklyHours(1, time(14), time(15), 60, Modality.ON_SITE, valid_until=date(2026, 3, 3)),
        ),
        closures=(Closure(date(2026, 3, 16), date(2026, 3, 20)),),
        openings=(Opening(date(2026, 3, 7), time(10), time(11), 15),),
    )
    found = slots("d1", availability, date(2026, 3, 2), date(2026, 3, 24), PARIS)
    days = sorted({s.start.astimezone(PARIS).date() for s in found})
    # Tue 3 (until 3rd), Sat 7 (opening), Mon 9, Tue 10 is past validity, closed 16-20, Mon 23
    assert days == [date(2026, 3, 3), date(2026, 3, 7), date(2026, 3, 9), date(2026, 3, 23)]
    assert [s.modality for s in found if s.start.astimezone(PARIS).day == 3] == [Modality.ON_SITE]
    assert len([s for s in found if s.start.astimezone(PARIS).day == 7]) == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda: WeeklyHours(7, time(9), time(10), 30),
        lambda: WeeklyHours(0, time(10), time(9), 30),
        lambda: WeeklyHours(0, time(9), time(10), 2),
        lambda: WeeklyHours(0, time(9), time(10), 600),
        lambda: WeeklyHours(0, time(9), time(10), 30, valid_from=date(2026, 2, 1),
                            valid_until=date(2026, 1, 1)),
        lambda: Closure(date(2026, 3, 2), date(2026, 3, 1)),
        lambda: Opening(date(2026, 3, 2), time(9, tzinfo=UTC), time(10), 30),
    ],
)  # fmt: skip
def test_nonsense_is_refused(make: object) -> None:
    with pytest.raises(InvalidAvailability):
        make()  # type: ignore[operator]


def test_a_range_is_bounded() -> None:
    with pytest.raises(InvalidAvailability):
        slots("d1", MORNINGS, date(2026, 1, 1), date(2026, 12, 31), PARIS)


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
    st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    st.integers(min_value=0, max_value=23),
    st.sampled_from([5, 15, 20, 30, 45, 60, 90]),
)
def test_every_slot_starts_on_the_wall_inside_its_hours(
    day: date, zone: str, hour: int, minutes: int
) -> None:
    """Whatever the zone and day: slots start at the wall times the pattern says, in order,
    without duplicates, last their length, and stay within the day's bounds."""
    tz = ZoneInfo(zone)
    end = time(min(hour + 3, 23), 59)
    pattern = Availability(weekly=(WeeklyHours(day.weekday(), time(hour), end, minutes),))
    found = slots("d1", pattern, day, day, tz)
    starts = [s.start for s in found]
    assert starts == sorted(set(starts))
    first, last = local_day_bounds(day, day, tz)
    for s in found:
        wall = s.start.astimezone(tz)
        assert wall.date() == day and time(hour) <= wall.time().replace(fold=0) < end
        assert s.end - s.start == timedelta(minutes=minutes)
        assert first <= s.start < last
        assert ((wall.hour * 60 + wall.minute) - hour * 60) % minutes == 0
