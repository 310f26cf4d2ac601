"""The patient's other privacy choices: inviting a practitioner into their care team (or booking
an appointment, which does the same until the follow-up ends), naming practitioners for
restricted data, restricting processing (GDPR art. 18).

Only the patient makes these choices, on their own record: a practitioner cannot invite or name
themselves. Each is decided by the policy, done with the primitives of
:mod:`secretum.policy.care` and :mod:`secretum.policy.restriction`, and audited in the same
transaction (DICOM 110110 Patient Record, purpose PATRQT).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.policy import care
from secretum.policy.decide import AccessDenied, require
from secretum.policy.facts import load_facts
from secretum.policy.model import AUDIT_PURPOSE, Action, Actor, Decision, Purpose, Resource, Role
from secretum.policy.restriction import set_restriction
from secretum.policy.tables import utc

#: An appointment keeps the practitioner in the care team this long after it.
APPOINTMENT_FOLLOW_UP = timedelta(days=30)
#: How far ahead an appointment may be booked.
APPOINTMENT_HORIZON = timedelta(days=365)


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


class PatientChoices:
    """A patient's own choices about who sees their data, audited."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def invite(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        practitioner_id: str,
        now: datetime,
        until: datetime | None = None,
        source_address: str | None = None,
    ) -> str:
        """The patient invites ``practitioner_id`` into their care team; the relationship id."""
        basis = care.CareBasis.INVITATION
        return self._join(
            conn, actor, patient_id, practitioner_id, basis, utc(now), until, source_address
        )

    def book_appointment(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        practitioner_id: str,
        at: datetime,
        now: datetime,
        source_address: str | None = None,
    ) -> str:
        """The patient books a consultation with ``practitioner_id`` at ``at``: the practitioner
        is in the care team from now until :data:`APPOINTMENT_FOLLOW_UP` after it (the
        consultation and its follow-up), unless the patient ends it earlier; the relationship
        id. Raises AccessDenied, ValueError (not in the future, or beyond a year)."""
        now, until = utc(now), appointment_follow_up_end(at, now)
        basis = care.CareBasis.APPOINTMENT
        return self._join(
            conn, actor, patient_id, practitioner_id, basis, now, until, source_address
        )

    def _join(
        self,
        conn: Connection,
        actor: Actor,
        patient_id: str,
        practitioner_id: str,
        basis: care.CareBasis,
        now: datetime,
        until: datetime | None,
        source_address: str | None,
    ) -> str:
        """The patient's own decision that ``practitioner_id`` joins the care team: decided,
        opened, audited; the relationship id."""
        self._own(conn, actor, patient_id, Action.MANAGE_CONSENT, now)
        relationship_id = care.start(
            conn,
            patient_id=patient_id,
            practitioner_id=practitioner_id,
            basis=basis,
            now=now,
            until=until,
        )
        self._audit(conn, actor, patient_id, "CareTeam", relationship_id, now, source_address)
        return relationship_id

    def end_relationship(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        relationship_id: str,
        now: datetime,
        source_address: str | None = None,
    ) -> bool:
        """The patient ends one of their care relationships (any basis); False if unknown or
        already ended."""
        now = utc(now)
        self._own(conn, actor, patient_id, Action.MANAGE_CONSENT, now)
        if not any(
            r.relationship_id == relationship_id for r in care.relationships(conn, patient_id)
        ):
            return False
        if not care.end(conn, relationship_id, now, by=actor.user_id):
            return False
        self._audit(
            conn, actor, patient_id, "CareTeam", relationship_id, now, source_address, update=True
        )
        return True

    def name_for_restricted(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        practitioner_id: str,
        now: datetime,
        source_address: str | None = None,
    ) -> str:
        """The patient names ``practitioner_id`` for their restricted data; the naming id."""
        now = utc(now)
        self._own(conn, actor, patient_id, Action.MANAGE_CONSENT, now)
        naming_id = care.name_for_restricted(conn, patient_id, practitioner_id, now)
        self._audit(conn, actor, patient_id, "Consent", naming_id, now, source_address)
        return naming_id

    def revoke_named(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        practitioner_id: str,
        now: datetime,
        source_address: str | None = None,
    ) -> bool:
        """The patient revokes the naming; effective on the very next request."""
        now = utc(now)
        self._own(conn, actor, patient_id, Action.MANAGE_CONSENT, now)
        if not care.revoke_named(conn, patient_id, practitioner_id, now):
            return False
        self._audit(
            conn, actor, patient_id, "Patient", patient_id, now, source_address, update=True
        )
        return True

    def set_restriction(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        on: bool,
        now: datetime,
        source_address: str | None = None,
    ) -> int:
        """The patient restricts (``on``) or frees the processing of their data (art. 18)."""
        now = utc(now)
        self._own(conn, actor, patient_id, Action.RESTRICT, now)
        seq = set_restriction(conn, patient_id, on, now, actor_id=actor.user_id)
        self._audit(
            conn, actor, patient_id, "Patient", patient_id, now, source_address, update=True
        )
        return seq

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _own(
        conn: Connection, actor: Actor, patient_id: str, action: Action, now: datetime
    ) -> None:
        if actor.role is not Role.PATIENT or actor.user_id != patient_id:
            raise AccessDenied(Decision(False, "deny.not-own-record"))
        resource = Resource("Patient", patient_id=patient_id, resource_id=patient_id)
        facts = load_facts(conn, actor, patient_id, now)
        require(actor, action, resource, Purpose.PATIENT_REQUEST, now, facts)

    def _audit(
        self,
        conn: Connection,
        actor: Actor,
        patient_id: str,
        resource_type: str,
        resource_id: str,
        now: datetime,
        source_address: str | None,
        *,
        update: bool = False,
    ) -> None:
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.PATIENT_RECORD,
                action=EventAction.UPDATE if update else EventAction.CREATE,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                subtype="update" if update else "create",
                resource_type=resource_type,
                resource_id=resource_id,
                patient_id=patient_id,
                purpose=AUDIT_PURPOSE[Purpose.PATIENT_REQUEST],
                source_address=source_address,
            ),
        )
