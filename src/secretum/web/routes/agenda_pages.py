"""The agenda's pages: a patient's appointments (``/me/appointments``: find a free slot, book,
cancel, move, upcoming and past consultations) and a practitioner's agenda (``/practice/agenda``:
a day or a week with each patient's name, the consultation note) and availability
(``/practice/availability``: weekly pattern, closures, extra openings).

Each handler makes its use-case calls (:class:`~secretum.agenda.service.AgendaService`: one
policy decision and one audit entry each) and renders; no route takes a patient id, and the
availability a practitioner publishes is always their own (the session's). Refusals become
pages (:class:`~secretum.web.care_pages.CarePageRoute`), the agenda's own in its words; a
booking refused for want of the teleconsultation consent says so and links to the consents
page. Times are the clinic's (``SECRETUM_TIMEZONE``), said so on every page. A video
appointment's "Join" button leads to ``/consult/{appointment_id}`` (the call pages).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Purpose, Role
from secretum.agenda.model import (
    AgendaEntry,
    Availability,
    Closure,
    InvalidAvailability,
    Modality,
    Opening,
    Slot,
    Status,
    WeeklyHours,
)
from secretum.agenda.service import (
    MAX_NOTE_CHARS,
    AgendaError,
    BadGuest,
    BadRequest,
    NotBooked,
    NoteRefused,
    NotOffered,
    NotYours,
    PatientBusy,
    SlotTaken,
    TooLate,
)
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.i18n import translate
from secretum.web.templating import clinic_zone, language, render

router = APIRouter(route_class=pages.CarePageRoute, include_in_schema=False)

PatientCaller = Annotated[Caller, Depends(deps.role(Role.PATIENT))]
PractitionerCaller = Annotated[Caller, Depends(deps.role(Role.PRACTITIONER))]
Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]

MINE = "/me/appointments"
AGENDA = "/practice/agenda"
AVAILABILITY = "/practice/availability"
#: Days of free slots shown at once (a week), and empty rows offered to add to each list.
WEEK = 7
EMPTY_ROWS = 2
#: Confirmations (``?done=<code>``, message ``agenda.done.<code>``).
DONE = frozenset(
    {"booked", "cancelled", "moved", "published", "note", "guest_added", "guest_withdrawn"}
)
#: The agenda's refusals in words (the message keys), most specific first.
ERRORS: tuple[tuple[type[AgendaError], int, str], ...] = (
    (PatientBusy, 409, "agenda.error.busy"),
    (SlotTaken, 409, "agenda.error.taken"),
    (NotOffered, 409, "agenda.error.not_offered"),
    (TooLate, 409, "agenda.error.too_late"),
    (NotBooked, 409, "agenda.error.not_booked"),
    (NotYours, 403, "agenda.error.not_yours"),
    (NoteRefused, 409, "agenda.error.note"),
    (BadGuest, 400, "agenda.error.guest"),
    (BadRequest, 400, "agenda.error.invalid"),
)


@contextmanager
def agenda_errors() -> Iterator[None]:
    """The agenda's refusals as pages with their own message (the policy's go as they are)."""
    try:
        yield
    except InvalidAvailability:
        raise pages.PageError(400, "agenda.error.availability") from None
    except AgendaError as exc:
        for kind, status, key in ERRORS:
            if isinstance(exc, kind):
                raise pages.PageError(status, key) from None
        raise pages.PageError(exc.status, "agenda.error.invalid") from None


def flashes(request: Request, code: str) -> list[tuple[str, str]]:
    if code not in DONE:
        return []
    return [("success", translate(language(request), f"agenda.done.{code}"))]


def done(url: str, code: str) -> RedirectResponse:
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}done={code}", status_code=303)


@dataclass(frozen=True)
class Clock:
    """Times of one page in the clinic's zone."""

    tz: ZoneInfo
    lang: str

    def hm(self, value: datetime) -> str:
        return value.astimezone(self.tz).strftime("%H:%M")

    def day(self, value: date) -> str:
        """``lundi 02/03/2026`` / ``Monday 2026-03-02``."""
        weekday = translate(self.lang, f"agenda.weekday.{value.weekday()}")
        text = value.strftime("%d/%m/%Y" if self.lang == "fr" else "%Y-%m-%d")
        return f"{weekday} {text}"

    def local_day(self, value: datetime) -> date:
        return value.astimezone(self.tz).date()


def clock(request: Request) -> Clock:
    return Clock(clinic_zone(request), language(request))


def helpers(request: Request) -> dict[str, Any]:
    c = clock(request)
    return {**pages.ctx(request), "hm": c.hm, "dayname": c.day, "local_day": c.local_day}


def parse_day(value: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise pages.PageError(400, "agenda.error.invalid") from None


def parse_instant(value: str) -> datetime:
    """A slot's start as the form carries it (an ISO instant with its offset)."""
    try:
        parsed = datetime.fromisoformat(value) if 19 <= len(value) <= 40 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise pages.PageError(400, "agenda.error.invalid")
    return parsed


def patient_ctx(caller: Caller, now: datetime) -> RequestContext:
    return caller.context(Purpose.PATIENT_REQUEST, now)


def care_ctx(caller: Caller, now: datetime) -> RequestContext:
    return caller.context(Purpose.TELECONSULTATION, now)


def by_day(found: list[Slot], tz: ZoneInfo) -> list[tuple[date, list[Slot]]]:
    days: dict[date, list[Slot]] = {}
    for s in found:
        days.setdefault(s.start.astimezone(tz).date(), []).append(s)
    return sorted(days.items())


def consent_missing(request: Request, exc: AccessDenied, back: str) -> Response:
    """A booking refused for want of the teleconsultation consent: said so, with the way to
    give it (any other refusal is the usual page)."""
    if exc.reason != "deny.no-consent":
        raise exc
    return render(request, "agenda_no_consent.html", status_code=403, back=back)


# -- the patient -------------------------------------------------------------------------------


@router.get(MINE, response_class=HTMLResponse)
def my_appointments(
    caller: PatientCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """My upcoming consultations (join, move, cancel) and past ones; where to book another."""
    agenda = svc.agenda
    mine = agenda.consultations(patient_ctx(caller, now))
    delay = agenda.settings.change_delay
    return render(
        request,
        "agenda_mine.html",
        upcoming=mine.upcoming,
        past=mine.past,
        changeable=lambda e: e.appointment.start - now >= delay,
        joinable=lambda e: e.appointment.modality is Modality.VIDEO,
        delay_hours=int(delay.total_seconds() // 3600),
        practitioners=svc.directory.practitioners(),
        **helpers(request),
        flashes=flashes(request, done),
    )


def _week(request: Request, now: datetime, week: str) -> tuple[date, date]:
    today = now.astimezone(clinic_zone(request)).date()
    first = max(parse_day(week, today), today)
    return first, first + timedelta(days=WEEK - 1)


def _chosen(svc: Services, practitioner_id: str) -> Any:
    for p in svc.directory.practitioners():
        if p.user_id == practitioner_id:
            return p
    raise pages.PageError(404, "agenda.error.practitioner")


@router.get(f"{MINE}/book", response_class=HTMLResponse)
def find_slots(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    practitioner_id: str = "",
    week: str = "",
) -> HTMLResponse:
    """A practitioner's free slots for a week from ``week`` (today by default)."""
    practitioner = _chosen(svc, practitioner_id)
    first, last = _week(request, now, week)
    with agenda_errors():
        found = svc.agenda.free_slots(patient_ctx(caller, now), practitioner_id, first, last)
    return _slots_page(request, practitioner, found, first, last, now, f"{MINE}/book", None)


def _slots_page(
    request: Request,
    practitioner: Any,
    found: list[Slot],
    first: date,
    last: date,
    now: datetime,
    action: str,
    moving: Any,
) -> HTMLResponse:
    """The week of free slots: booking one (``moving`` None) or moving ``moving`` to one."""
    return render(
        request,
        "agenda_slots.html",
        practitioner=practitioner,
        days=by_day(found, clinic_zone(request)),
        first=first,
        last=last,
        previous=first - timedelta(days=WEEK),
        following=first + timedelta(days=WEEK),
        today=now.astimezone(clinic_zone(request)).date(),
        action=action,
        moving=moving,
        **helpers(request),
    )


@router.post(f"{MINE}/book", **pages.back_to(MINE))
def book(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    practitioner_id: FormStr = "",
    start: FormStr = "",
) -> Response:
    """I book this slot (the teleconsultation consent is needed: the page says so if not)."""
    at = parse_instant(start)
    try:
        with agenda_errors():
            svc.agenda.book(patient_ctx(caller, now), practitioner_id, at)
    except AccessDenied as exc:
        return consent_missing(request, exc, f"{MINE}/book?practitioner_id={practitioner_id}")
    return done(MINE, "booked")


@router.post(MINE + "/{appointment_id}/cancel", **pages.back_to(MINE))
def cancel(caller: PatientCaller, svc: Svc, now: Now, appointment_id: str) -> RedirectResponse:
    """I cancel my appointment (up to the change delay before it)."""
    with agenda_errors():
        svc.agenda.cancel(patient_ctx(caller, now), appointment_id)
    return done(MINE, "cancelled")


@router.post(MINE + "/{appointment_id}/guests", **pages.back_to(MINE))
def accept_guest(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    appointment_id: str,
    practitioner_id: FormStr = "",
) -> Response:
    """I accept a second practitioner or an interpreter (the staff directory) into the video
    call of my appointment (the teleconsultation consent is needed: the page says so)."""
    guest = _chosen(svc, practitioner_id)
    try:
        with agenda_errors():
            svc.agenda.accept_guest(care_ctx(caller, now), appointment_id, guest.user_id)
    except AccessDenied as exc:
        return consent_missing(request, exc, MINE)
    return done(MINE, "guest_added")


@router.post(MINE + "/{appointment_id}/guests/{practitioner_id}/withdraw", **pages.back_to(MINE))
def withdraw_guest(
    caller: PatientCaller, svc: Svc, now: Now, appointment_id: str, practitioner_id: str
) -> RedirectResponse:
    """I withdraw a guest of my appointment's call (a call in progress ends for them)."""
    with agenda_errors():
        svc.agenda.withdraw_guest(patient_ctx(caller, now), appointment_id, practitioner_id)
    return done(MINE, "guest_withdrawn")


@router.get(MINE + "/{appointment_id}/move", response_class=HTMLResponse, **pages.back_to(MINE))
def move_slots(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    appointment_id: str,
    week: str = "",
) -> HTMLResponse:
    """The free slots of my appointment's practitioner, to move it to one of them."""
    ctx = patient_ctx(caller, now)
    current = svc.agenda.appointment(ctx, appointment_id)
    if current.status is not Status.BOOKED:
        raise pages.PageError(409, "agenda.error.not_booked")
    practitioner = _chosen(svc, current.practitioner_id)
    first, last = _week(request, now, week)
    with agenda_errors():
        found = svc.agenda.free_slots(ctx, current.practitioner_id, first, last)
    action = f"{MINE}/{appointment_id}/move"
    return _slots_page(request, practitioner, found, first, last, now, action, current)


@router.post(MINE + "/{appointment_id}/move", **pages.back_to(MINE))
def move(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    appointment_id: str,
    start: FormStr = "",
) -> Response:
    """I move my appointment to this slot (up to the change delay; consent needed)."""
    at = parse_instant(start)
    try:
        with agenda_errors():
            svc.agenda.move(patient_ctx(caller, now), appointment_id, at)
    except AccessDenied as exc:
        return consent_missing(request, exc, MINE)
    return done(MINE, "moved")


# -- the practitioner: agenda and note -----------------------------------------------------------


@router.get(AGENDA, response_class=HTMLResponse)
def my_agenda(
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    day: str = "",
    view: str = "day",
    done: str = "",
) -> HTMLResponse:
    """My appointments of a day or a week (Monday to Sunday), each with the patient's name."""
    tz = clinic_zone(request)
    chosen = parse_day(day, now.astimezone(tz).date())
    week = view == "week"
    first = chosen - timedelta(days=chosen.weekday()) if week else chosen
    days = WEEK if week else 1
    entries = svc.agenda.agenda(care_ctx(caller, now), first, days=days)
    grouped: dict[date, list[AgendaEntry]] = {}
    for e in entries:
        grouped.setdefault(e.appointment.start.astimezone(tz).date(), []).append(e)
    return render(
        request,
        "agenda_practice.html",
        days=sorted(grouped.items()),
        count=len(entries),
        first=first,
        last=first + timedelta(days=days - 1),
        week=week,
        chosen=chosen,
        previous=first - timedelta(days=days),
        following=first + timedelta(days=days),
        today=now.astimezone(tz).date(),
        started=lambda e: e.appointment.start <= now,
        ended=lambda e: e.appointment.end <= now,
        **helpers(request),
        flashes=flashes(request, done),
    )


@router.get(AGENDA + "/{appointment_id}/note", response_class=HTMLResponse)
def note_form(
    caller: PractitionerCaller, request: Request, svc: Svc, now: Now, appointment_id: str
) -> HTMLResponse:
    """The note of a video consultation I held (written once, into the patient's record)."""
    current = svc.agenda.appointment(care_ctx(caller, now), appointment_id)
    if current.practitioner_id != caller.user_id:
        raise pages.PageError(403, "agenda.error.not_yours")
    tz = clinic_zone(request)
    day = current.start.astimezone(tz).date()
    names = {e.appointment.appointment_id: e.display_name for e in _day_of(svc, caller, now, day)}
    return render(
        request,
        "agenda_note.html",
        appointment=current,
        patient=names.get(appointment_id, ""),
        max_chars=MAX_NOTE_CHARS,
        back=f"{AGENDA}?day={day.isoformat()}",
        **helpers(request),
    )


def _day_of(svc: Services, caller: Caller, now: datetime, day: date) -> list[AgendaEntry]:
    return svc.agenda.agenda(care_ctx(caller, now), day)


@router.post(AGENDA + "/{appointment_id}/note", **pages.back_to(AGENDA))
def write_note(
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    appointment_id: str,
    text: FormStr = "",
) -> RedirectResponse:
    """The note goes into the patient's record (Encounter + Composition, sealed, audited)."""
    with agenda_errors():
        svc.agenda.write_note(care_ctx(caller, now), appointment_id, text)
    return done(AGENDA, "note")


# -- the practitioner: availability -------------------------------------------------------------


@router.get(AVAILABILITY, response_class=HTMLResponse)
def availability_form(
    caller: PractitionerCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """What I publish, as rows to change, remove (emptied) or add."""
    current = svc.agenda.availability(caller.context(Purpose.OPERATIONS, now))
    return render(
        request,
        "agenda_availability.html",
        weekly=[*current.weekly, *([None] * EMPTY_ROWS)],
        closures=[*current.closures, *([None] * EMPTY_ROWS)],
        openings=[*current.openings, *([None] * EMPTY_ROWS)],
        modalities=[str(m) for m in Modality],
        **helpers(request),
        flashes=flashes(request, done),
    )


def _rows(form: Any, *names: str, mode: bool = True) -> list[tuple[str, ...]]:
    """The form's rows of fields ``names`` (repeated fields, in order), empty rows left out (a
    row with only its modality, which always has a value, is empty)."""
    columns = [form.getlist(n) for n in names]
    if len({len(c) for c in columns}) > 1 or len(columns[0]) > 100:
        raise pages.PageError(400, "agenda.error.availability")
    rows = [tuple(str(v).strip() for v in row) for row in zip(*columns, strict=True)]
    return [r for r in rows if any(r[:-1] if mode else r)]


def _time(value: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise pages.PageError(400, "agenda.error.availability") from None


def _int(value: str) -> int:
    if not value.isdigit() or len(value) > 4:
        raise pages.PageError(400, "agenda.error.availability")
    return int(value)


def _modality(value: str) -> Modality:
    try:
        return Modality(value)
    except ValueError:
        raise pages.PageError(400, "agenda.error.availability") from None


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise pages.PageError(400, "agenda.error.availability") from None


def parse_availability(form: Any) -> Availability:
    """The availability of the form (400 for a row half filled or out of bounds)."""
    with agenda_errors():
        weekly = tuple(
            WeeklyHours(_int(d), _time(s), _time(e), _int(m), _modality(k))
            for d, s, e, m, k in _rows(form, "w_day", "w_start", "w_end", "w_minutes", "w_mode")
        )
        closures = tuple(
            Closure(_day(f), _day(t)) for f, t in _rows(form, "c_first", "c_last", mode=False)
        )
        openings = tuple(
            Opening(_day(d), _time(s), _time(e), _int(m), _modality(k))
            for d, s, e, m, k in _rows(form, "o_day", "o_start", "o_end", "o_minutes", "o_mode")
        )
    return Availability(weekly, closures, openings)


@router.post(AVAILABILITY, **pages.back_to(AVAILABILITY))
async def publish(caller: PractitionerCaller, request: Request, now: Now) -> RedirectResponse:
    """I publish my availability (replaced as a whole; booked appointments stay)."""
    availability = parse_availability(await request.form())
    svc = deps.services(request)
    ctx = caller.context(Purpose.OPERATIONS, now)
    with agenda_errors():
        await run_in_threadpool(svc.agenda.publish, ctx, availability)
    return done(AVAILABILITY, "published")
