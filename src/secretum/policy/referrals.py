"""Referrals: the care team brings a colleague in.

A practitioner of the patient's care team, acting for a purpose the patient consented to,
refers the patient to a colleague (a radiologist for an X-ray, a specialist): the colleague
joins the care team (basis REFERRAL, the referrer as source), for a limited time if given. The
patient is told, on their pages, who referred them to whom, and may end it like any other
relationship. (Appointments, which the patient books, are among the patient's own choices:
:meth:`secretum.consent.choices.PatientChoices.book_appointment`.)

Decided by the policy (one decision), done with :func:`secretum.policy.care.start` and audited
in the same transaction (DICOM 110110 Patient Record, C on the CareTeam). Whether the colleague
is a practitioner of the platform is for the caller to check (the identity context knows the
accounts).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.notices.store import NoticeKind, notify
from secretum.policy import care
from secretum.policy.decide import AccessDenied, require
from secretum.policy.facts import load_facts
from secretum.policy.model import AUDIT_PURPOSE, Action, Actor, Decision, Purpose, Resource, Role
from secretum.policy.tables import utc


class CareTeamService:
    """Referrals: care relationships the care team opens, decided and audited."""

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
