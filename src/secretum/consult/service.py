"""Who may join an appointment's call, and whether they still may: the consult use cases.

=====================  ===========  =========================  ================  ============
use case               action       resource                   purpose           audit
=====================  ===========  =========================  ================  ============
join (WebSocket)       JOIN_CALL    Appointment (its patient)  TELECONSULTATION  one entry
call page              JOIN_CALL    Appointment (its patient)  TELECONSULTATION  one entry
re-check (during)      JOIN_CALL    Appointment (its patient)  TELECONSULTATION  none (1)
leave                  —            Appointment (its patient)  TELECONSULTATION  one entry
save a shared file     CREATE       DocumentReference          TELECONSULTATION  one entry (2)
=====================  ===========  =========================  ================  ============

The join is ONE decision through the door (:class:`~secretum.access.door.Door`): the policy's
``join-call`` rules (the patient: their own appointment and an active teleconsultation consent;
the practitioner: the patient's care team and that consent), then the call's own checks, in
the same attempt, each refusal with its code in the one audit entry: the actor is the
appointment's patient or practitioner, or a practitioner the patient accepted into this call
(a second practitioner, an interpreter: :mod:`secretum.policy.guests`, the policy's
``allow.join-call-guest``; role ``guest``) (``deny.not-participant``), it is booked
(``deny.not-booked``), by video (``deny.not-video``), the care relationship between the two
holds (``deny.not-in-care-team``, for the patient too), and now is in the window
(``deny.outside-window``: from ``waiting_room`` before the start to ``grace`` after the end).

(1) During a call, :meth:`ConsultService.still_allowed` asks the same questions again (the
guard, then the checks) without writing an entry: it reads nothing it returns, and what it
finds ends the call, whose end is audited by :meth:`ConsultService.leave` with the reason
(``call.consent-withdrawn.<seconds>s``...). The appointments are read through the agenda's
store (tags checked).

(2) A file shared in the call (decrypted in the practitioner's browser) is saved into the
patient's record by the appointment's practitioner only, through
:meth:`~secretum.records.documents.DocumentService.create_document` (streaming encryption,
the policy's care-team and teleconsultation-consent rule, its one audit entry). Anyone else
(the patient, another practitioner, an unknown appointment) is refused before the record is
touched, with one audit entry ``deny.not-participant`` naming the appointment.

Blocking (database): the signaling layer calls these in worker threads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, BinaryIO, Protocol

from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.errors import AccessDenied
from secretum.access.guard import Guard
from secretum.access.model import AUDIT_PURPOSE, Action, Actor, Decision, Purpose, Resource
from secretum.access.model import Role as AccountRole
from secretum.agenda import store
from secretum.agenda.model import Appointment, Modality, Status
from secretum.audit.log import AuditLog
from secretum.audit.model import ID_PATTERN, AuditEvent, EventAction, EventType, Outcome
from secretum.consult.model import (
    ENDED_BY,
    NOT_BOOKED,
    NOT_IN_CARE_TEAM,
    NOT_PARTICIPANT,
    NOT_VIDEO,
    OUTSIDE_WINDOW,
    Admission,
    ConsultSettings,
    EndReason,
    Role,
)
from secretum.logs import get_logger
from secretum.policy import guests
from secretum.policy.facts import load_facts
from secretum.policy.tables import utc
from secretum.records.documents import DocumentService
from secretum.records.fhir import instant
from secretum.storage.integrity import RowTampered

_log = get_logger("secretum.consult")

#: The purpose of every consult use case (its consent is what the join needs).
PURPOSE = Purpose.TELECONSULTATION


class Contacts(Protocol):
    """Display names of accounts (sealed: opened with each person's key)."""

    def display_name(self, conn: Connection, user_id: str) -> str | None: ...


def _deny(reason: str) -> AccessDenied:
    return AccessDenied(Decision(False, reason))


class ConsultService:
    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        guard: Guard,
        *,
        contacts: Contacts,
        settings: ConsultSettings,
        documents: DocumentService | None = None,
    ) -> None:
        self.door = Door(engine, audit, guard)
        self.audit = audit
        self.guard = guard
        self.contacts = contacts
        self.settings = settings
        self.documents = documents

    # -- the decision --------------------------------------------------------------------------

    @staticmethod
    def _resource(appointment_id: str, found: Appointment | None) -> Resource:
        """An unknown id names no patient: the policy refuses it like someone else's."""
        patient = found.patient_id if found is not None else None
        return Resource("Appointment", patient_id=patient, resource_id=appointment_id)

    def _checks(
        self, conn: Connection, actor: Actor, found: Appointment | None, now: datetime, *,
        window: bool,
    ) -> Appointment:  # fmt: skip
        """The call's own conditions (after the policy's); AccessDenied with the code."""
        if found is None or not (
            actor.user_id in (found.patient_id, found.practitioner_id)
            or self._guest(conn, actor, found, now)
        ):
            raise _deny(NOT_PARTICIPANT)
        if found.status is not Status.BOOKED:
            raise _deny(NOT_BOOKED)
        if found.modality is not Modality.VIDEO:
            raise _deny(NOT_VIDEO)
        practitioner = Actor(found.practitioner_id, AccountRole.PRACTITIONER)
        if not load_facts(conn, practitioner, found.patient_id, now).in_care_team:
            raise _deny(NOT_IN_CARE_TEAM)
        if window and not self.settings.open_at(found, utc(now)):
            raise _deny(OUTSIDE_WINDOW)
        return found

    @staticmethod
    def _guest(conn: Connection, actor: Actor, found: Appointment, now: datetime) -> bool:
        """The patient accepted ``actor`` (a practitioner) into this appointment's call."""
        return actor.role is AccountRole.PRACTITIONER and guests.is_guest(
            conn, found.appointment_id, found.patient_id, actor.user_id, now
        )

    def _admission(
        self, conn: Connection, actor: Actor, found: Appointment, now: datetime
    ) -> Admission:
        patient = actor.user_id == found.patient_id
        other = found.practitioner_id if patient else found.patient_id
        role = (
            Role.PATIENT
            if patient
            else Role.PRACTITIONER
            if actor.user_id == found.practitioner_id
            else Role.GUEST
        )
        return Admission(
            appointment_id=found.appointment_id,
            patient_id=found.patient_id,
            practitioner_id=found.practitioner_id,
            user_id=actor.user_id,
            role=role,
            start=found.start,
            end=found.end,
            name=self.contacts.display_name(conn, actor.user_id) or "?",
            other_name=self.contacts.display_name(conn, other) or "?",
            joined_at=utc(now),
            window_open=self.settings.open_at(found, utc(now)),
        )

    def _decide(
        self, ctx: RequestContext, appointment_id: str, subtype: str, code: EventAction, *,
        window: bool,
    ) -> Admission:  # fmt: skip
        ctx = ctx.for_purpose(PURPOSE)
        attempt = Attempt(ctx, EventType.PATIENT_RECORD, subtype, str(code))

        def work(conn: Connection) -> Admission:
            found = store.appointment(conn, appointment_id)
            resource = self._resource(appointment_id, found)
            self.door.authorize(conn, attempt, Action.JOIN_CALL, resource)
            checked = self._checks(conn, ctx.actor, found, ctx.now, window=window)
            return self._admission(conn, ctx.actor, checked, ctx.now)

        return self.door.read(attempt, work)

    def join(self, ctx: RequestContext, appointment_id: str) -> Admission:
        """Let ``ctx.actor`` into the call of ``appointment_id``: one decision, one audit entry
        (refused: AccessDenied, the reason code in the entry only)."""
        return self._decide(ctx, appointment_id, "operation", EventAction.EXECUTE, window=True)

    def page(self, ctx: RequestContext, appointment_id: str) -> Admission:
        """The call page's facts (names, times): the same decision without the time window
        (the page says "too early" or "over"), audited as a read."""
        return self._decide(ctx, appointment_id, "read", EventAction.READ, window=False)

    def refuse_socket(
        self, actor: Actor | None, appointment_id: str, reason: str, now: datetime,
        source_address: str | None = None,
    ) -> None:  # fmt: skip
        """Audit a join refused before any decision could be taken: no live session (``actor``
        None: ``anonymous``) or a foreign ``Origin`` (``deny.bad-origin``). The appointment is
        named; its patient is not looked up (nothing is read)."""
        self._refusal(
            actor, appointment_id, reason, now, source_address, "operation", EventAction.EXECUTE
        )

    def _refusal(
        self, actor: Actor | None, appointment_id: str, reason: str, now: datetime,
        source_address: str | None, subtype: str, action: EventAction,
    ) -> None:  # fmt: skip
        named = ID_PATTERN.fullmatch(appointment_id) is not None
        self.audit.append_committed(
            AuditEvent(
                recorded=utc(now),
                event_type=EventType.PATIENT_RECORD,
                action=action,
                actor_id=actor.user_id if actor is not None else "anonymous",
                actor_role=str(actor.role) if actor is not None else "anonymous",
                outcome=Outcome.MINOR_FAILURE,
                subtype=subtype,
                resource_type="Appointment" if named else None,
                resource_id=appointment_id if named else None,
                purpose=AUDIT_PURPOSE[PURPOSE],
                source_address=source_address,
                outcome_desc=reason,
            )
        )

    # -- a file shared in the call, into the record ----------------------------------------------

    def save_shared_file(
        self, ctx: RequestContext, appointment_id: str, name: str, content: BinaryIO,
        content_type: str,
    ) -> str:  # fmt: skip
        """Save a file shared in the call of ``appointment_id`` into its patient's record, as
        a DocumentReference titled ``name``: by the appointment's practitioner only (else
        AccessDenied ``deny.not-participant``, audited), then one decision and one audit entry
        by the document service (care team, teleconsultation consent). The document's id."""
        if self.documents is None:
            raise RuntimeError("the consult service has no document service")
        ctx = ctx.for_purpose(PURPOSE)
        with self.door.reads.connect() as conn, conn.begin():
            found = store.appointment(conn, appointment_id)
        actor = ctx.actor
        if (
            found is None
            or actor.role is not AccountRole.PRACTITIONER
            or actor.user_id != found.practitioner_id
        ):
            self._refusal(
                actor, appointment_id, NOT_PARTICIPANT, ctx.now, ctx.source_address, "create",
                EventAction.CREATE,
            )  # fmt: skip
            raise _deny(NOT_PARTICIPANT)
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{found.patient_id}"},
            "date": instant(ctx.now),
            "description": (name.strip() or "document")[:200],
            "content": [{"attachment": {}}],
        }
        saved = self.documents.create_document(
            ctx, resource, content, content_type, patient_id=found.patient_id
        )
        return saved.resource_id

    # -- during the call -----------------------------------------------------------------------

    def still_allowed(self, actor: Actor, appointment_id: str, now: datetime) -> EndReason | None:
        """None while the join's conditions hold; else why the call ends (no audit entry:
        the leave that follows records it)."""
        try:
            with self.door.reads.connect() as conn, conn.begin():
                found = store.appointment(conn, appointment_id)
                decision = self.guard.check(
                    conn, actor, Action.JOIN_CALL, self._resource(appointment_id, found),
                    PURPOSE, now,
                )  # fmt: skip
                if not decision:
                    if found is not None and actor.user_id not in (
                        found.patient_id, found.practitioner_id,
                    ) and not self._guest(conn, actor, found, now):  # fmt: skip
                        return EndReason.GUEST_WITHDRAWN
                    return ENDED_BY.get(decision.reason, EndReason.POLICY)
                self._checks(conn, actor, found, now, window=True)
        except AccessDenied as exc:
            return ENDED_BY.get(exc.reason, EndReason.POLICY)
        except RowTampered:
            _log.error("consult.recheck_tampered")
            return EndReason.POLICY
        return None

    def leave(
        self, ctx: RequestContext, admission: Admission, reason: EndReason, now: datetime
    ) -> None:
        """The participant left (or was ended): one audit entry, the reason and the call's
        duration in seconds as its code (``call.hung-up.754s``)."""
        seconds = max(0, int((utc(now) - admission.joined_at).total_seconds()))
        attempt = Attempt(
            ctx.for_purpose(PURPOSE).at(now), EventType.PATIENT_RECORD, "operation",
            str(EventAction.EXECUTE),
        )  # fmt: skip
        attempt.target("Appointment", admission.appointment_id, admission.patient_id)
        self.audit.append_committed(attempt.event(Outcome.SUCCESS, f"call.{reason}.{seconds}s"))


__all__ = ["PURPOSE", "ConsultService", "Contacts"]
