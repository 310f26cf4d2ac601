"""Care relationships that care itself opens: a referral, an appointment.

* **Referral** — a practitioner of the patient's care team, acting for a purpose the patient
  consented to, refers the patient to a colleague (a radiologist for an X-ray, a specialist):
  the colleague joins the care team (basis REFERRAL, the referrer as source), for a limited time
  if given. The patient is told, on their pages, who referred them to whom.
* **Appointment** — the patient books a consultation with a practitioner: the practitioner is
  in the care team from now until :data:`APPOINTMENT_FOLLOW_UP` after the appointment (the
  consultation and its follow-up: results, a report), unless the patient ends it earlier.

Each is decided by the policy (one decision), done with :func:`secretum.policy.care.start` and
audited in the same transaction (DICOM 110110 Patient Record, C on the CareTeam). Whether the
other party is a practitioner of the platform is for the caller to check (the identity context
knows the accounts).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.notices.store import NoticeKind, notify
from secretum.policy import care
from secretum.policy.decide import AccessDenied, require
from secretum.policy.facts import load_facts
from secretum.policy.model import AUDIT_PURPOSE, Action, Actor, Decision, Purpose, Resource, Role
from secretum.policy.tables import utc

#: An appointment keeps the practitioner in the care team this long after it.
APPOINTMENT_FOLLOW_UP = timedelta(days=30)
#: How far ahead an appointment may be booked.
APPOINTMENT_HORIZON = timedelta(days=365)


class CareTeamService:
    """Referrals and appointments: care relationships opened by care, decided and audited."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def refer(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        practitioner_id: str,
        purpose: Purpose,
        now: datetime,
        until: datetime | None = None,
        source_address: str | None = None,
    ) -> str:
        """``actor`` (in the care team, with consent for ``purpose``) refers the patient to
        ``practitioner_id``; the relationship id. Raises AccessDenied, ValueError."""
        now = utc(now)
        if actor.role is not Role.PRACTITIONER:
            raise AccessDenied(Decision(False, "deny.default"))
        if practitioner_id == actor.user_id:
            raise ValueError("a practitioner does not refer a patient to themselves")
        if until is not None and utc(until) <= now:
            raise ValueError("a referral ends after it starts")
        facts = load_facts(conn, actor, patient_id, now)
        require(actor, Action.CREATE, Resource("CareTeam", patient_id), purpose, now, facts)
        relationship_id = care.start(
            conn,
            patient_id=patient_id,
            practitioner_id=practitioner_id,
            basis=care.CareBasis.REFERRAL,
            now=now,
            until=until,
            source_id=actor.user_id,
        )
        notify(
            conn,
            patient_id,
            NoticeKind.REFERRED,
            now,
            actor_id=actor.user_id,
            practitioner_id=practitioner_id,
        )
        self._audit(conn, actor, patient_id, relationship_id, purpose, now, source_address)
        return relationship_id

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
        """The patient books a consultation with ``practitioner_id`` at ``at``; the id of the
        care relationship it opens. Raises AccessDenied, ValueError."""
        now, at = utc(now), utc(at)
        if not now < at <= now + APPOINTMENT_HORIZON:
            raise ValueError("an appointment is in the future, within a year")
        if actor.role is not Role.PATIENT or actor.user_id != patient_id:
            raise AccessDenied(Decision(False, "deny.not-own-record"))
        resource = Resource("Patient", patient_id=patient_id, resource_id=patient_id)
        facts = load_facts(conn, actor, patient_id, now)
        require(actor, Action.MANAGE_CONSENT, resource, Purpose.PATIENT_REQUEST, now, facts)
        relationship_id = care.start(
            conn,
            patient_id=patient_id,
            practitioner_id=practitioner_id,
            basis=care.CareBasis.APPOINTMENT,
            now=now,
            until=at + APPOINTMENT_FOLLOW_UP,
        )
        purpose = Purpose.PATIENT_REQUEST
        self._audit(conn, actor, patient_id, relationship_id, purpose, now, source_address)
        return relationship_id

    def _audit(
        self,
        conn: Connection,
        actor: Actor,
        patient_id: str,
        relationship_id: str,
        purpose: Purpose,
        now: datetime,
        source_address: str | None,
    ) -> None:
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.PATIENT_RECORD,
                action=EventAction.CREATE,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                subtype="create",
                resource_type="CareTeam",
                resource_id=relationship_id,
                patient_id=patient_id,
                purpose=AUDIT_PURPOSE[purpose],
                source_address=source_address,
            ),
        )
