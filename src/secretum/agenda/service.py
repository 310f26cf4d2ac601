"""The agenda's use cases: publish availability, list free slots, book, cancel, move, see one's
agenda or one's consultations, and the reminder duty.

Each use case takes the :class:`~secretum.access.context.RequestContext` (actor, now, address)
first and runs for its own purpose (the table's; the context's purpose is replaced). It is
decided once and audited once through the door (:meth:`AgendaService._door`, the one place this
module touches it), refused attempts included:

=====================  ===========  ===================================  ===================
use case               action       resource                             purpose
=====================  ===========  ===================================  ===================
publish                UPDATE       Schedule/<practitioner>              OPERATIONS
free slots             SEARCH       Slot/<practitioner>                  TELECONSULTATION
book                   CREATE       Appointment (patient = the actor)    TELECONSULTATION
move                   UPDATE       Appointment (its patient)            TELECONSULTATION
cancel                 UPDATE       Appointment (its patient)            PATIENT_REQUEST
practitioner agenda    SEARCH       Schedule/<practitioner>              TELECONSULTATION
my consultations       SEARCH       Appointment (patient = the actor)    PATIENT_REQUEST
=====================  ===========  ===================================  ===================

Booking and moving need the patient's teleconsultation consent (the policy's
``allow.book-appointment``); cancelling does not (a patient who withdrew it can still cancel).
A booking opens the care relationship of its follow-up period with the mechanism of
:func:`secretum.policy.choices.open_appointment_relationship` (today's rule: from the booking
until 30 days after the consultation), in the same transaction and under the same audit entry
(the appointment's; the relationship's ``source_id`` is the appointment id). Cancelling ends
that relationship; moving ends it and opens the new appointment's.

Mail: after the transaction commits, the patient is told (booked, moved, cancelled; and the
reminder duty) without health data (:mod:`secretum.mail.texts`). A message that cannot be
handed over is logged; the appointment stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import Guard
from secretum.access.model import Action, Actor, Purpose, Resource, Role
from secretum.agenda import fhir, store
from secretum.agenda.model import (
    MAX_RANGE_DAYS,
    AgendaEntry,
    Appointment,
    Availability,
    InvalidAvailability,
    Modality,
    Slot,
    Status,
    local_day_bounds,
    slots,
)
from secretum.audit.log import AuditLog
from secretum.audit.model import EventAction, EventType
from secretum.logs import get_logger
from secretum.mail import Mailer, MailError, Message, texts
from secretum.policy import care, guests
from secretum.policy.choices import APPOINTMENT_HORIZON, open_appointment_relationship
from secretum.policy.tables import utc
from secretum.records.fhir import FhirError, FhirRecord, ResourceNotFound

T = TypeVar("T")
_log = get_logger("secretum.agenda")

#: What a booking is for: the purpose whose consent it needs.
BOOKING_PURPOSE = Purpose.TELECONSULTATION


class AgendaError(FhirError):
    """A request the agenda refuses (audited as a refused attempt, MINOR_FAILURE)."""

    status = 409
    code = "business-rule"


class SlotTaken(AgendaError):
    """Someone else booked this slot first (the database kept their booking)."""

    code = "conflict"

    def __init__(self, diagnostics: str = "this slot was just booked by someone else") -> None:
        super().__init__(diagnostics)


class PatientBusy(SlotTaken):
    """The patient already has an appointment at that time."""

    def __init__(self) -> None:
        super().__init__("you already have an appointment at that time")


class NotOffered(AgendaError):
    """The practitioner offers no slot starting at that time (or it is past, or too far)."""

    def __init__(self) -> None:
        super().__init__("this time is not a free slot of the practitioner")


class TooLate(AgendaError):
    """The appointment is too close to change (``SECRETUM_AGENDA_CHANGE_DELAY_HOURS``)."""


class NotBooked(AgendaError):
    """The appointment was already cancelled, moved or held."""

    def __init__(self) -> None:
        super().__init__("this appointment is no longer booked")


class BadRequest(AgendaError):
    """Malformed request (an availability that makes no sense, a range too long)."""

    status = 400
    code = "invalid"


class NotYours(AgendaError):
    """A practitioner acting on an appointment of another practitioner (a colleague of the
    same care team: the policy let them in, the appointment is not theirs)."""

    status = 403
    code = "forbidden"

    def __init__(self) -> None:
        super().__init__("this appointment is with another practitioner")


class BadGuest(AgendaError):
    """Not someone the patient may accept into the call: the appointment's own practitioner,
    the patient, an unknown account, or an appointment that is not a video one."""

    status = 400
    code = "invalid"

    def __init__(self) -> None:
        super().__init__("this person cannot be added to this call")


class NoteRefused(AgendaError):
    """A consultation note that cannot be written now (not a video consultation, not begun
    yet, or already written)."""


#: The longest consultation note (characters).
MAX_NOTE_CHARS = 20_000


class NoteRecords(Protocol):
    """Where a consultation note goes: the record (sealed with the patient's key), written in
    the note's own transaction (:meth:`secretum.records.service.RecordService.write_new`)."""

    def write_new(
        self,
        conn: Connection,
        body: dict[str, Any],
        *,
        patient_id: str,
        now: datetime,
        resource_id: str | None = None,
    ) -> FhirRecord: ...


class Contacts(Protocol):
    """Names and addresses of accounts (sealed: opened with each person's key)."""

    def display_name(self, conn: Connection, user_id: str) -> str | None: ...

    def email(self, conn: Connection, user_id: str) -> str | None: ...


@dataclass(frozen=True)
class AgendaSettings:
    tz: ZoneInfo
    platform_url: str
    change_delay: timedelta = timedelta(hours=24)
    reminder_lead: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Consultations:
    """A patient's appointments, each with the practitioner's name."""

    upcoming: list[AgendaEntry]
    past: list[AgendaEntry]


class AgendaService:
    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        guard: Guard,
        *,
        mailer: Mailer,
        contacts: Contacts,
        settings: AgendaSettings,
        notes: NoteRecords | None = None,
    ) -> None:
        self.engine = engine
        self.notes = notes
        self.door = Door(engine, audit, guard)
        self.mailer = mailer
        self.contacts = contacts
        self.settings = settings

    # -- the one use of the door ---------------------------------------------------------------

    def _door(
        self,
        ctx: RequestContext,
        *,
        purpose: Purpose,
        event: EventType,
        subtype: str,
        code: EventAction,
        action: Action,
        resource: Callable[[Connection], Resource],
        work: Callable[[Connection], T],
        read: bool = False,
    ) -> T:
        """Run one use case for ``ctx`` with the use case's own ``purpose``: ``resource(conn)``
        names what it acts on, the guard decides once, then ``work(conn)``; one audit entry
        (refusals and failures included)."""
        attempt = Attempt(ctx.for_purpose(purpose).at(utc(ctx.now)), event, subtype, code)

        def decided(conn: Connection) -> T:
            self.door.authorize(conn, attempt, action, resource(conn))
            return work(conn)

        if read:
            return self.door.read(attempt, decided)
        return self.door.run(attempt, decided)

    # -- availability and slots ----------------------------------------------------------------

    def publish(self, ctx: RequestContext, availability: Availability) -> None:
        """The practitioner replaces what they publish (their own only)."""
        actor = ctx.actor
        self._door(
            ctx,
            purpose=Purpose.OPERATIONS,
            event=EventType.APPLICATION_ACTIVITY,
            subtype="update",
            code=EventAction.UPDATE,
            action=Action.UPDATE,
            resource=lambda _c: Resource("Schedule", resource_id=actor.user_id),
            work=lambda conn: store.replace_availability(conn, actor.user_id, availability),
        )

    def free_slots(
        self, ctx: RequestContext, practitioner_id: str, first_day: date, last_day: date
    ) -> list[Slot]:
        """The practitioner's free slots from ``first_day`` to ``last_day`` (clinic days,
        inclusive), future ones only, in order. A range refused (BadRequest) is audited too:
        every check runs after the decision, inside the door."""
        return self._door(
            ctx,
            purpose=BOOKING_PURPOSE,
            event=EventType.QUERY,
            subtype="search",
            code=EventAction.EXECUTE,
            action=Action.SEARCH,
            resource=lambda _c: Resource("Slot", resource_id=practitioner_id),
            work=lambda conn: self._free(conn, practitioner_id, first_day, last_day, ctx.now),
            read=True,
        )

    def _free(
        self, conn: Connection, practitioner_id: str, first_day: date, last_day: date, now: datetime
    ) -> list[Slot]:
        if not first_day <= last_day or (last_day - first_day).days >= MAX_RANGE_DAYS:
            raise BadRequest(f"ask for 1 to {MAX_RANGE_DAYS} days")
        tz = self.settings.tz
        offered = slots(practitioner_id, store.availability_of(conn, practitioner_id), first_day,
                        last_day, tz)  # fmt: skip
        start, end = local_day_bounds(first_day, last_day, tz)
        taken = store.booked_starts(conn, practitioner_id, start, end)
        now = utc(now)
        return [s for s in offered if s.start > now and s.start not in taken]

    def _offered(
        self, conn: Connection, practitioner_id: str, start: datetime, now: datetime
    ) -> Slot:
        """The slot of ``practitioner_id`` starting at ``start``; NotOffered unless it is one
        of their published slots, in the future, within the booking horizon."""
        start, now = utc(start), utc(now)
        if not now < start <= now + APPOINTMENT_HORIZON:
            raise NotOffered()
        day = start.astimezone(self.settings.tz).date()
        availability = store.availability_of(conn, practitioner_id)
        for slot in slots(practitioner_id, availability, day, day, self.settings.tz):
            if slot.start == start:
                return slot
        raise NotOffered()

    # -- booking, cancelling, moving -----------------------------------------------------------

    def book(self, ctx: RequestContext, practitioner_id: str, start: datetime) -> Appointment:
        """The patient books the practitioner's slot at ``start`` for themselves.

        AccessDenied without the teleconsultation consent (or for anyone but a patient);
        NotOffered if the time is not a slot; SlotTaken if someone booked it first (the
        database decides), PatientBusy if the patient has another appointment then."""
        actor, now = ctx.actor, ctx.now
        appointment_id = store.new_id()

        def work(conn: Connection) -> Appointment:
            slot = self._offered(conn, practitioner_id, start, now)
            return self._insert(conn, actor.user_id, slot, appointment_id, now)

        booked = self._door(
            ctx,
            purpose=BOOKING_PURPOSE,
            event=EventType.PATIENT_RECORD,
            subtype="create",
            code=EventAction.CREATE,
            action=Action.CREATE,
            resource=lambda _c: self._booking(actor, appointment_id),
            work=work,
        )
        self._mail(booked.patient_id, lambda to: texts.appointment_booked(
            to, booked.start, self.settings.platform_url, self.settings.tz))  # fmt: skip
        return booked

    @staticmethod
    def _booking(actor: Actor, appointment_id: str) -> Resource:
        """A booking is the actor's own appointment: only a patient books, for themselves."""
        patient = actor.user_id if actor.role is Role.PATIENT else None
        return Resource("Appointment", patient_id=patient, resource_id=appointment_id)

    def _insert(
        self, conn: Connection, patient_id: str, slot: Slot, appointment_id: str, now: datetime
    ) -> Appointment:
        """Insert the booking and open its care relationship (one transaction: the caller's).

        The relationship is opened first and the appointment inserted last: if the database
        refuses the appointment (double booking), the whole transaction rolls back."""
        if patient_id == slot.practitioner_id:
            raise NotOffered()
        relationship_id = open_appointment_relationship(
            conn,
            patient_id=patient_id,
            practitioner_id=slot.practitioner_id,
            at=slot.start,
            now=now,
            source_id=appointment_id,
        )
        try:
            store.insert_appointment(
                conn,
                appointment_id=appointment_id,
                practitioner_id=slot.practitioner_id,
                patient_id=patient_id,
                start=slot.start,
                end=slot.end,
                modality=slot.modality,
                purpose=str(BOOKING_PURPOSE),
                relationship_id=relationship_id,
                now=now,
            )
        except IntegrityError as exc:  # the transaction is rolled back by the door
            if store.PATIENT_INDEX in str(exc.orig) or "patient_id" in str(exc.orig):
                raise PatientBusy() from None
            raise SlotTaken() from None
        found = store.appointment(conn, appointment_id)
        assert found is not None
        return found

    def _changeable(self, conn: Connection, actor: Actor, appointment_id: str) -> Resource:
        """The appointment as the policy sees it (its patient); an unknown id names no patient,
        which the policy refuses like another patient's appointment."""
        found = store.appointment(conn, appointment_id, lock=True)
        patient = found.patient_id if found is not None else None
        return Resource("Appointment", patient_id=patient, resource_id=appointment_id)

    def _check_change(self, conn: Connection, appointment_id: str, now: datetime) -> Appointment:
        current = store.appointment(conn, appointment_id)
        if current is None or current.status is not Status.BOOKED:
            raise NotBooked()
        delay = self.settings.change_delay
        if current.start - utc(now) < delay:
            hours = int(delay.total_seconds() // 3600)
            raise TooLate(
                f"an appointment can be changed up to {hours} hours before it; contact the practice"
            )
        return current

    def _end_relationship(
        self, conn: Connection, current: Appointment, actor: Actor, now: datetime
    ) -> None:
        if current.relationship_id is not None:
            care.end(conn, current.relationship_id, utc(now), by=actor.user_id)

    def cancel(self, ctx: RequestContext, appointment_id: str) -> Appointment:
        """The patient cancels their appointment, up to the change delay before it (TooLate
        after). The slot is free again; the care relationship it opened ends now. Returns the
        appointment, cancelled."""
        actor, now = ctx.actor, ctx.now

        def work(conn: Connection) -> Appointment:
            current = self._check_change(conn, appointment_id, now)
            if not store.set_status(conn, current, Status.CANCELLED, now):
                raise NotBooked()
            self._end_relationship(conn, current, actor, now)
            return replace(current, status=Status.CANCELLED, updated_at=utc(now))

        was = self._door(
            ctx,
            purpose=Purpose.PATIENT_REQUEST,
            event=EventType.PATIENT_RECORD,
            subtype="update",
            code=EventAction.UPDATE,
            action=Action.UPDATE,
            resource=lambda conn: self._changeable(conn, actor, appointment_id),
            work=work,
        )
        self._mail(was.patient_id, lambda to: texts.appointment_cancelled(
            to, was.start, self.settings.platform_url, self.settings.tz))  # fmt: skip
        return was

    # -- guests of the call (a second practitioner, an interpreter) ------------------------

    def accept_guest(self, ctx: RequestContext, appointment_id: str, practitioner_id: str) -> None:
        """The patient accepts ``practitioner_id`` (a practitioner of the staff directory: a
        second practitioner, an interpreter) into the video call of their appointment; only
        that call, while the acceptance holds (:mod:`secretum.policy.guests`). Purpose
        teleconsultation (its consent is needed); one decision, one audit entry."""
        actor, now = ctx.actor, ctx.now

        def work(conn: Connection) -> None:
            current = store.appointment(conn, appointment_id)
            if current is None or current.status is not Status.BOOKED or current.end <= utc(now):
                raise NotBooked()
            if (
                current.modality is not Modality.VIDEO
                or practitioner_id in (current.practitioner_id, current.patient_id)
                or self.contacts.display_name(conn, practitioner_id) is None
            ):
                raise BadGuest()
            guests.accept(
                conn, appointment_id=appointment_id, patient_id=current.patient_id,
                practitioner_id=practitioner_id, now=now,
            )  # fmt: skip

        self._door(
            ctx,
            purpose=BOOKING_PURPOSE,
            event=EventType.PATIENT_RECORD,
            subtype="update",
            code=EventAction.UPDATE,
            action=Action.UPDATE,
            resource=lambda conn: self._changeable(conn, actor, appointment_id),
            work=work,
        )

    def withdraw_guest(
        self, ctx: RequestContext, appointment_id: str, practitioner_id: str
    ) -> None:
        """The patient withdraws a guest of their appointment's call (no consent needed, like
        a cancellation); a call in progress ends for the guest at its next policy re-check."""
        actor, now = ctx.actor, ctx.now

        def work(conn: Connection) -> None:
            if not guests.withdraw(conn, appointment_id, practitioner_id, now):
                raise BadGuest()

        self._door(
            ctx,
            purpose=Purpose.PATIENT_REQUEST,
            event=EventType.PATIENT_RECORD,
            subtype="update",
            code=EventAction.UPDATE,
            action=Action.UPDATE,
            resource=lambda conn: self._changeable(conn, actor, appointment_id),
            work=work,
        )

    def move(self, ctx: RequestContext, appointment_id: str, start: datetime) -> Appointment:
        """The patient moves their appointment to another free slot of the same practitioner,
        up to the change delay before it. The old one is marked moved (its slot is free
        again, its relationship ends); the new one is a booking (consent needed, SlotTaken
        if someone was first). Returns the new appointment."""
        actor, now = ctx.actor, ctx.now
        new_id = store.new_id()
        moved: list[Appointment] = []

        def work(conn: Connection) -> Appointment:
            current = self._check_change(conn, appointment_id, now)
            slot = self._offered(conn, current.practitioner_id, start, now)
            if slot.start == current.start:
                raise NotOffered()
            if not store.set_status(conn, current, Status.MOVED, now, moved_to=new_id):
                raise NotBooked()
            self._end_relationship(conn, current, actor, now)
            moved.append(current)
            return self._insert(conn, current.patient_id, slot, new_id, now)

        new = self._door(
            ctx,
            purpose=BOOKING_PURPOSE,
            event=EventType.PATIENT_RECORD,
            subtype="update",
            code=EventAction.UPDATE,
            action=Action.UPDATE,
            resource=lambda conn: self._changeable(conn, actor, appointment_id),
            work=work,
        )
        was = moved[0].start
        self._mail(new.patient_id, lambda to: texts.appointment_moved(
            to, was, new.start, self.settings.platform_url, self.settings.tz))  # fmt: skip
        return new

    # -- reading -------------------------------------------------------------------------------

    def agenda(self, ctx: RequestContext, first_day: date, *, days: int = 1) -> list[AgendaEntry]:
        """The practitioner's own appointments of ``days`` clinic days from ``first_day`` (a
        day, a week), each with the patient's display name."""
        actor = ctx.actor

        def work(conn: Connection) -> list[AgendaEntry]:
            if not 1 <= days <= MAX_RANGE_DAYS:
                raise BadRequest(f"ask for 1 to {MAX_RANGE_DAYS} days")
            last_day = first_day + timedelta(days=days - 1)
            start, end = local_day_bounds(first_day, last_day, self.settings.tz)
            found = store.of_practitioner(conn, actor.user_id, start, end)
            return [self._entry(conn, a, a.patient_id) for a in found]

        return self._door(
            ctx,
            purpose=BOOKING_PURPOSE,
            event=EventType.PATIENT_RECORD,
            subtype="search",
            code=EventAction.EXECUTE,
            action=Action.SEARCH,
            resource=lambda _c: Resource("Schedule", resource_id=actor.user_id),
            work=work,
            read=True,
        )

    def consultations(self, ctx: RequestContext, patient_id: str | None = None) -> Consultations:
        """The patient's upcoming (booked, soonest first) and past (held or booked in the
        past, latest first) consultations, each with the practitioner's name: the caller's own
        (purpose ``patient-request``), or ``patient_id``'s for their care team (the context's
        purpose of care; the policy refuses anyone else)."""
        actor, now = ctx.actor, ctx.now
        pid = patient_id or actor.user_id
        purpose = Purpose.PATIENT_REQUEST if pid == actor.user_id else ctx.purpose

        def work(conn: Connection) -> Consultations:
            mine = store.of_patient(conn, pid)
            at = utc(now)
            upcoming = [a for a in mine if a.status is Status.BOOKED and a.end > at]
            past = [
                a
                for a in reversed(mine)
                if a.status in (Status.BOOKED, Status.FULFILLED) and a.end <= at
            ]
            return Consultations(
                [self._entry(conn, a, a.practitioner_id, with_guests=True) for a in upcoming],
                [self._entry(conn, a, a.practitioner_id) for a in past],
            )

        return self._door(
            ctx,
            purpose=purpose,
            event=EventType.PATIENT_RECORD,
            subtype="search",
            code=EventAction.EXECUTE,
            action=Action.SEARCH,
            resource=lambda _c: Resource("Appointment", patient_id=pid),
            work=work,
            read=True,
        )

    def _entry(
        self, conn: Connection, appointment: Appointment, who: str, *, with_guests: bool = False
    ) -> AgendaEntry:
        name = self.contacts.display_name(conn, who) or "?"
        if not with_guests:
            return AgendaEntry(appointment, name)
        accepted = tuple(
            (g.practitioner_id, self.contacts.display_name(conn, g.practitioner_id) or "?")
            for g in guests.guests_of(conn, appointment.appointment_id)
        )
        return AgendaEntry(appointment, name, accepted)

    def appointment(self, ctx: RequestContext, appointment_id: str) -> Appointment:
        """One appointment, for its patient (purpose ``patient-request``) or a practitioner of
        their care team (a purpose of care, with the patient's consent): the policy decides on
        the appointment's patient (ctx's purpose). ResourceNotFound for an id that names none."""
        return self._read_about(ctx, "Appointment", appointment_id)

    def encounter(self, ctx: RequestContext, appointment_id: str) -> Appointment:
        """The appointment behind the Encounter of a consultation (FHIR ``Encounter?appointment=``)
        : decided as a read of that Encounter, about the appointment's patient."""
        return self._read_about(ctx, "Encounter", appointment_id)

    def _read_about(self, ctx: RequestContext, kind: str, appointment_id: str) -> Appointment:
        """Read the appointment, decided as a read of ``kind`` about its patient."""
        return self._door(
            ctx,
            purpose=ctx.purpose,
            event=EventType.PATIENT_RECORD,
            subtype="read",
            code=EventAction.READ,
            action=Action.READ,
            resource=lambda conn: self._existing(conn, kind, appointment_id),
            work=lambda conn: self._found(conn, appointment_id),
            read=True,
        )

    @staticmethod
    def _existing(conn: Connection, kind: str, appointment_id: str) -> Resource:
        found = store.appointment(conn, appointment_id)
        if found is None:
            raise ResourceNotFound(f"no {kind} with this id")
        return Resource(kind, patient_id=found.patient_id, resource_id=appointment_id)

    @staticmethod
    def _found(conn: Connection, appointment_id: str) -> Appointment:
        found = store.appointment(conn, appointment_id)
        if found is None:
            raise ResourceNotFound("no Appointment with this id")
        return found

    def availability(self, ctx: RequestContext) -> Availability:
        """What the practitioner publishes (their own only), to edit it."""
        actor = ctx.actor
        return self._door(
            ctx,
            purpose=Purpose.OPERATIONS,
            event=EventType.APPLICATION_ACTIVITY,
            subtype="read",
            code=EventAction.READ,
            action=Action.READ,
            resource=lambda _c: Resource("Schedule", resource_id=actor.user_id),
            work=lambda conn: store.availability_of(conn, actor.user_id),
            read=True,
        )

    def schedule(self, ctx: RequestContext, practitioner_id: str) -> bool:
        """Whether ``practitioner_id`` publishes any availability (FHIR ``Schedule``): public
        hours, decided like their free slots."""
        return self._door(
            ctx,
            purpose=ctx.purpose,
            event=EventType.QUERY,
            subtype="read",
            code=EventAction.READ,
            action=Action.READ,
            resource=lambda _c: Resource("Slot", resource_id=practitioner_id),
            work=lambda conn: store.availability_of(conn, practitioner_id) != Availability(),
            read=True,
        )

    # -- the consultation note -----------------------------------------------------------------

    def write_note(self, ctx: RequestContext, appointment_id: str, text: str) -> str:
        """After a video consultation, its practitioner writes the note into the patient's
        record: the consultation's Encounter (class VR, id = the appointment's, linked to it)
        and a Composition (LOINC 11488-4 Consult note) holding the text, both sealed with the
        patient's key by the records; the appointment becomes fulfilled. One decision (CREATE
        of the Encounter, a purpose of care: care team and consent), one audit entry, one
        transaction. Returns the Composition's id.

        NotYours for a colleague's appointment; NoteRefused before the consultation began, for
        an on-site one, or a second time; BadRequest for an empty or too long text."""
        notes = self.notes
        if notes is None:
            raise RuntimeError("the agenda was built without the records (no notes)")
        body = text.replace("\r\n", "\n").strip()
        now = utc(ctx.now)

        def work(conn: Connection) -> str:
            if not 1 <= len(body) <= MAX_NOTE_CHARS:
                raise BadRequest(f"a note has 1 to {MAX_NOTE_CHARS} characters")
            if any(ord(c) < 32 and c not in "\n\t" for c in body):
                raise BadRequest("a note is text: no control characters")
            current = store.appointment(conn, appointment_id, lock=True)
            assert current is not None  # _existing found it in this transaction
            if current.practitioner_id != ctx.actor.user_id:
                raise NotYours()
            if current.modality is not Modality.VIDEO:
                raise NoteRefused("a note here follows a video consultation")
            if current.status is Status.FULFILLED:
                raise NoteRefused("the note of this consultation was already written")
            if current.status is not Status.BOOKED:
                raise NotBooked()
            if now < current.start:
                raise NoteRefused("the consultation has not begun")
            patient = current.patient_id
            notes.write_new(conn, fhir.held_encounter(current, now), patient_id=patient,
                            now=now, resource_id=current.appointment_id)  # fmt: skip
            note = notes.write_new(conn, fhir.consult_note(current, body, now),
                                   patient_id=patient, now=now)  # fmt: skip
            if not store.set_status(conn, current, Status.FULFILLED, now):
                raise NotBooked()
            return note.resource_id

        return self._door(
            ctx,
            purpose=BOOKING_PURPOSE,
            event=EventType.PATIENT_RECORD,
            subtype="create",
            code=EventAction.CREATE,
            action=Action.CREATE,
            resource=lambda conn: self._existing(conn, "Encounter", appointment_id),
            work=work,
        )

    # -- mail ------------------------------------------------------------------------------------

    def _mail(self, patient_id: str, message: Callable[[str], Message]) -> bool:
        """Tell the patient (after the commit); False if there is no address or it failed."""
        try:
            with self.engine.connect() as conn:
                to = self.contacts.email(conn, patient_id)
            if to is None:
                return False
            self.mailer.send(message(to))
        except MailError as exc:
            _log.error("mail.failed", kind="appointment", reason=str(exc))
            return False
        _log.info("mail.sent", kind="appointment")
        return True

    def send_reminders(self, now: datetime) -> int:
        """The reminder duty: one message per booked appointment starting within the reminder
        lead, once (the mark is claimed before sending: with several instances, each reminder
        goes out at most once). Returns how many were sent."""
        now = utc(now)
        with self.engine.connect() as conn:
            due = store.due_reminders(conn, now, now + self.settings.reminder_lead)
        sent = 0
        for appointment in due:
            with self.engine.begin() as conn:
                if not store.claim_reminder(conn, appointment.appointment_id, now):
                    continue
            sent += self._mail(appointment.patient_id, self._reminder(appointment.start))
        return sent

    def _reminder(self, at: datetime) -> Callable[[str], Message]:
        def message(to: str) -> Message:
            return texts.appointment_reminder(to, at, self.settings.platform_url, self.settings.tz)

        return message


__all__ = [
    "AgendaError",
    "AgendaService",
    "AgendaSettings",
    "BadRequest",
    "Consultations",
    "Contacts",
    "InvalidAvailability",
    "Modality",
    "NotBooked",
    "NotOffered",
    "NotYours",
    "NoteRecords",
    "NoteRefused",
    "PatientBusy",
    "SlotTaken",
    "TooLate",
]
