"""The patient's other privacy choices: inviting a practitioner into their care team (or booking
an appointment, which does the same until the follow-up ends), naming practitioners for
restricted data, restricting processing (GDPR art. 18).

Only the patient makes these choices, on their own record: a practitioner cannot invite or name
themselves. Each is one use case through the door (:class:`~secretum.access.door.Door`):
decided once by the policy, done with the primitives of :mod:`secretum.policy.care` and
:mod:`secretum.policy.restriction`, audited once in the same transaction (DICOM 110110 Patient
Record, purpose PATRQT), refused attempts included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import Guard
from secretum.access.model import Action, Decision, Purpose, Resource, Role
from secretum.audit.log import AuditLog
from secretum.audit.model import EventAction, EventType
from secretum.policy import care
from secretum.policy.restriction import set_restriction
from secretum.storage.times import utc

#: An appointment keeps the practitioner in the care team this long after it.
APPOINTMENT_FOLLOW_UP = timedelta(days=30)
#: How far ahead an appointment may be booked.
APPOINTMENT_HORIZON = timedelta(days=365)
NOT_OWN_RECORD = Decision(False, "deny.not-own-record")


def appointment_follow_up_end(at: datetime, now: datetime) -> datetime:
    """When the care relationship of an appointment at ``at``, booked at ``now``, ends: the
    consultation and its follow-up (:data:`APPOINTMENT_FOLLOW_UP`). ValueError unless ``at``
    is in the future, within :data:`APPOINTMENT_HORIZON`."""
    now, at = utc(now), utc(at)
    if not now < at <= now + APPOINTMENT_HORIZON:
        raise ValueError("an appointment is in the future, within a year")
    return at + APPOINTMENT_FOLLOW_UP


def open_appointment_relationship(
    conn: Connection,
    *,
    patient_id: str,
    practitioner_id: str,
    at: datetime,
    now: datetime,
    source_id: str | None = None,
) -> str:
    """The care relationship an appointment makes (today's rule, as :meth:`PatientChoices.
    book_appointment`): the practitioner is in the care team from ``now`` until the end of the
    follow-up (:func:`appointment_follow_up_end`); the relationship id.

    A primitive run in the caller's transaction, for a context that decides and audits the
    booking itself (:mod:`secretum.agenda`, whose appointment id is ``source_id``)."""
    until = appointment_follow_up_end(at, now)
    return care.start(
        conn,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        basis=care.CareBasis.APPOINTMENT,
        now=utc(now),
        until=until,
        source_id=source_id,
    )


T = TypeVar("T")


class PatientChoices:
    """A patient's own choices about who sees their data, decided and audited by the door."""

    def __init__(self, engine: Engine, audit: AuditLog, guard: Guard) -> None:
        self.door = Door(engine, audit, guard)

    def invite(
        self,
        ctx: RequestContext,
        *,
        patient_id: str,
        practitioner_id: str,
        until: datetime | None = None,
    ) -> str:
        """The patient invites ``practitioner_id`` into their care team; the relationship id."""
        basis = care.CareBasis.INVITATION
        return self._join(ctx, patient_id, practitioner_id, basis, lambda: until)

    def book_appointment(
        self, ctx: RequestContext, *, patient_id: str, practitioner_id: str, at: datetime
    ) -> str:
        """The patient books a consultation with ``practitioner_id`` at ``at``: the practitioner
        is in the care team from now until :data:`APPOINTMENT_FOLLOW_UP` after it (the
        consultation and its follow-up), unless the patient ends it earlier; the relationship
        id. Raises AccessDenied, ValueError (not in the future, or beyond a year)."""
        basis = care.CareBasis.APPOINTMENT
        return self._join(
            ctx, patient_id, practitioner_id, basis, lambda: appointment_follow_up_end(at, ctx.now)
        )

    def _join(
        self,
        ctx: RequestContext,
        patient_id: str,
        practitioner_id: str,
        basis: care.CareBasis,
        until: Callable[[], datetime | None],
    ) -> str:
        """The patient's own decision that ``practitioner_id`` joins the care team: decided,
        opened, audited; the relationship id. ``until`` runs inside the door, after the
        decision: a refused date (ValueError) is audited like any refusal."""

        def work(conn: Connection, attempt: Attempt) -> str:
            relationship_id = care.start(
                conn,
                patient_id=patient_id,
                practitioner_id=practitioner_id,
                basis=basis,
                now=utc(ctx.now),
                until=until(),
            )
            attempt.target("CareTeam", relationship_id)
            return relationship_id

        return self._own(ctx, patient_id, Action.MANAGE_CONSENT, "CareTeam", False, work)

    def end_relationship(
        self, ctx: RequestContext, *, patient_id: str, relationship_id: str
    ) -> bool:
        """The patient ends one of their care relationships (any basis); False if unknown or
        already ended."""

        def work(conn: Connection, attempt: Attempt) -> bool:
            attempt.target("CareTeam", relationship_id)
            if not any(
                r.relationship_id == relationship_id for r in care.relationships(conn, patient_id)
            ):
                return False
            return care.end(conn, relationship_id, utc(ctx.now), by=ctx.actor.user_id)

        return self._own(ctx, patient_id, Action.MANAGE_CONSENT, "CareTeam", True, work)

    def name_for_restricted(
        self, ctx: RequestContext, *, patient_id: str, practitioner_id: str
    ) -> str:
        """The patient names ``practitioner_id`` for their restricted data; the naming id."""

        def work(conn: Connection, attempt: Attempt) -> str:
            naming_id = care.name_for_restricted(conn, patient_id, practitioner_id, utc(ctx.now))
            attempt.target("Consent", naming_id)
            return naming_id

        return self._own(ctx, patient_id, Action.MANAGE_CONSENT, "Consent", False, work)

    def revoke_named(self, ctx: RequestContext, *, patient_id: str, practitioner_id: str) -> bool:
        """The patient revokes the naming; effective on the very next request."""

        def work(conn: Connection, attempt: Attempt) -> bool:
            return care.revoke_named(conn, patient_id, practitioner_id, utc(ctx.now))

        return self._own(ctx, patient_id, Action.MANAGE_CONSENT, "Patient", True, work)

    def set_restriction(self, ctx: RequestContext, *, patient_id: str, on: bool) -> int:
        """The patient restricts (``on``) or frees the processing of their data (art. 18)."""

        def work(conn: Connection, attempt: Attempt) -> int:
            return set_restriction(conn, patient_id, on, utc(ctx.now), actor_id=ctx.actor.user_id)

        return self._own(ctx, patient_id, Action.RESTRICT, "Patient", True, work)

    # -- the door -----------------------------------------------------------------------------

    def _own(
        self,
        ctx: RequestContext,
        patient_id: str,
        action: Action,
        kind: str,
        update: bool,
        work: Callable[[Connection, Attempt], T],
    ) -> T:
        """One choice of the patient on their own record: the attempt (names the patient's
        ``kind`` until the work names what it made), the decision (refused outright when the
        actor is not that patient), the work, one audit entry."""
        managing = ctx.for_purpose(Purpose.PATIENT_REQUEST)
        action_code = EventAction.UPDATE if update else EventAction.CREATE
        subtype = "update" if update else "create"
        attempt = Attempt(managing, EventType.PATIENT_RECORD, subtype, action_code)
        attempt.target(kind if kind == "Patient" else None, patient_id, patient_id)

        def guarded(conn: Connection) -> T:
            if ctx.actor.role is not Role.PATIENT or ctx.actor.user_id != patient_id:
                self.door.rule(attempt, NOT_OWN_RECORD)
            resource = Resource("Patient", patient_id=patient_id, resource_id=patient_id)
            self.door.authorize(conn, attempt, action, resource)
            if kind != "Patient":
                attempt.resource_type = attempt.resource_id = None
            return work(conn, attempt)

        return self.door.run(attempt, guarded)
