"""The agenda's vocabulary, as plain objects, and the one computation it owns: slots.

A practitioner publishes an :class:`Availability`: a weekly pattern (:class:`WeeklyHours`: a
weekday, opening and closing wall-clock times, a slot length, video or on site, valid between
two dates), days off (:class:`Closure`) and extra openings on given days (:class:`Opening`).
Everything is in the clinic's time zone, because that is how a practice thinks ("Mondays 9 to
12"): :func:`slots` turns the pattern into instants for a range of days, zone-aware, so that
"9:00" stays 9:00 on the wall across the March and October changes (it is 08:00 UTC in winter,
07:00 UTC in summer). A booked :class:`Appointment` keeps its start and end as UTC instants.

Slots start at wall-clock times (every ``slot_minutes`` from the opening) and last their length
in real time. Wall-clock times that do not exist (the hour skipped in March) are not offered;
those that happen twice (the hour repeated in October) are offered once, at their first
occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

#: Bounds on what a practitioner may publish (a slot of 5 minutes to 4 hours).
MIN_SLOT_MINUTES = 5
MAX_SLOT_MINUTES = 240
#: How many days one question about free slots (or an agenda) may span.
MAX_RANGE_DAYS = 62


class Modality(StrEnum):
    VIDEO = "video"
    ON_SITE = "on-site"


class Status(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    #: replaced by another appointment (``moved_to``)
    MOVED = "moved"
    FULFILLED = "fulfilled"


class InvalidAvailability(ValueError):
    """A pattern, closure or opening that makes no sense (end before start, bad length...)."""


def _check_hours(start: time, end: time, slot_minutes: int) -> None:
    if start.tzinfo is not None or end.tzinfo is not None:
        raise InvalidAvailability("hours are wall-clock times of the clinic, without a zone")
    if not start < end:
        raise InvalidAvailability("hours end after they start")
    if not MIN_SLOT_MINUTES <= slot_minutes <= MAX_SLOT_MINUTES:
        raise InvalidAvailability(f"a slot lasts {MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES} minutes")


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """Open every ``weekday`` (0 = Monday) from ``start`` to ``end``, in slots."""

    weekday: int
    start: time
    end: time
    slot_minutes: int
    modality: Modality = Modality.VIDEO
    valid_from: date | None = None
    valid_until: date | None = None  # inclusive

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise InvalidAvailability("weekday is 0 (Monday) to 6 (Sunday)")
        _check_hours(self.start, self.end, self.slot_minutes)
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise InvalidAvailability("a pattern is valid until a date after it starts")

    def applies(self, day: date) -> bool:
        return (
            day.weekday() == self.weekday
            and (self.valid_from is None or self.valid_from <= day)
            and (self.valid_until is None or day <= self.valid_until)
        )


@dataclass(frozen=True, slots=True)
class Closure:
    """Closed from ``first_day`` to ``last_day`` (inclusive): holidays, training..."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise InvalidAvailability("a closure ends on or after its first day")

    def covers(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day


@dataclass(frozen=True, slots=True)
class Opening:
    """Open on ``day`` from ``start`` to ``end`` besides the pattern (not during a closure)."""

    day: date
    start: time
    end: time
    slot_minutes: int
    modality: Modality = Modality.VIDEO

    def __post_init__(self) -> None:
        _check_hours(self.start, self.end, self.slot_minutes)


@dataclass(frozen=True, slots=True)
class Availability:
    """What one practitioner publishes (replaced as a whole)."""

    weekly: tuple[WeeklyHours, ...] = ()
    closures: tuple[Closure, ...] = ()
    openings: tuple[Opening, ...] = ()


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable interval of one practitioner (UTC instants)."""

    practitioner_id: str
    start: datetime
    end: datetime
    modality: Modality

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class Appointment:
    """A booking (UTC instants). Ids and codes only: no free text is kept (see store)."""

    appointment_id: str
    practitioner_id: str
    patient_id: str
    start: datetime
    end: datetime
    modality: Modality
    status: Status
    purpose: str
    relationship_id: str | None
    moved_to: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AgendaEntry:
    """An appointment and the other party's display name (the patient's on a practitioner's
    agenda, the practitioner's on a patient's list)."""

    appointment: Appointment
    display_name: str
    #: the people the patient accepted into this appointment's call: (user id, name)
    guests: tuple[tuple[str, str], ...] = ()


def _instant(day: date, at: time, tz: ZoneInfo) -> datetime | None:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``tz``; None if it does not exist
    (the hour skipped in spring). A repeated time (autumn) is its first occurrence."""
    local = datetime.combine(day, at, tzinfo=tz)  # fold=0: the first occurrence
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # does not exist on the wall
    return instant


def _day_slots(
    practitioner_id: str,
    day: date,
    start: time,
    end: time,
    minutes: int,
    modality: Modality,
    tz: ZoneInfo,
) -> Iterator[Slot]:
    step = timedelta(minutes=minutes)
    wall = datetime.combine(day, start)
    closing = datetime.combine(day, end)
    while wall + step <= closing:
        begin = _instant(day, wall.time(), tz)
        if begin is not None:  # a slot lasts its length in real time, even across a change
            yield Slot(practitioner_id, begin, begin + step, modality)
        wall += step


def days(first_day: date, last_day: date) -> Iterator[date]:
    day = first_day
    while day <= last_day:
        yield day
        day += timedelta(days=1)


def slots(
    practitioner_id: str,
    availability: Availability,
    first_day: date,
    last_day: date,
    tz: ZoneInfo,
) -> list[Slot]:
    """Every slot the availability offers from ``first_day`` to ``last_day`` (clinic days,
    inclusive), in order, without duplicates (a pattern and an opening may overlap: the first
    slot starting at an instant is kept)."""
    if (last_day - first_day).days >= MAX_RANGE_DAYS:
        raise InvalidAvailability(f"ask for at most {MAX_RANGE_DAYS} days at a time")
    found: dict[datetime, Slot] = {}
    for day in days(first_day, last_day):
        if any(c.covers(day) for c in availability.closures):
            continue
        hours: Iterable[WeeklyHours | Opening] = [
            *(w for w in availability.weekly if w.applies(day)),
            *(o for o in availability.openings if o.day == day),
        ]
        for h in hours:
            for slot in _day_slots(
                practitioner_id, day, h.start, h.end, h.slot_minutes, h.modality, tz
            ):
                found.setdefault(slot.start, slot)
    return [found[k] for k in sorted(found)]


def local_day_bounds(first_day: date, last_day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants that start ``first_day`` and end ``last_day`` on the clinic's wall."""
    start = datetime.combine(first_day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end
