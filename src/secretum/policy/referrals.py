"""Referrals: the care team brings a colleague in.

A practitioner of the patient's care team, acting for a purpose the patient consented to,
refers the patient to a colleague (a radiologist for an X-ray, a specialist): the colleague
joins the care team (basis REFERRAL, the referrer as source), for a limited time if given. The
patient is told, on their pages, who referred them to whom, and may end it like any other
relationship. (Appointments, which the patient books, are among the patient's own choices:
:meth:`secretum.policy.choices.PatientChoices.book_appointment`.)

Decided by the policy through the door (one decision, refused attempts audited too), done with
:func:`secretum.policy.care.start` and audited once in the same transaction (DICOM 110110
Patient Record, C on the CareTeam). Whether the colleague
is a practitioner of the platform is for the caller to check (the identity context knows the
accounts).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import DEFAULT_DENY, Guard
from secretum.access.model import Action, Resource, Role
from secretum.audit.log import AuditLog
from secretum.audit.model import EventAction, EventType
from secretum.notices.store import NoticeKind, notify
from secretum.policy import care
from secretum.storage.times import utc


class CareTeamService:
    """Referrals: care relationships the care team opens, decided and audited by the door."""

    def __init__(self, engine: Engine, audit: AuditLog, guard: Guard) -> None:
        self.door = Door(engine, audit, guard)

    def refer(
        self,
        ctx: RequestContext,
        *,
        patient_id: str,
        practitioner_id: str,
        until: datetime | None = None,
    ) -> str:
        """``ctx.actor`` (in the care team, with consent for ``ctx.purpose``) refers the patient
        to ``practitioner_id``; the relationship id. Raises AccessDenied, ValueError."""
        attempt = Attempt(ctx, EventType.PATIENT_RECORD, "create", EventAction.CREATE)
        attempt.target(None, None, patient_id)
        actor, now = ctx.actor, utc(ctx.now)

        def work(conn: Connection) -> str:
            if actor.role is not Role.PRACTITIONER:
                self.door.rule(attempt, DEFAULT_DENY)
            if practitioner_id == actor.user_id:
                raise ValueError("a practitioner does not refer a patient to themselves")
            if until is not None and utc(until) <= now:
                raise ValueError("a referral ends after it starts")
            self.door.authorize(conn, attempt, Action.CREATE, Resource("CareTeam", patient_id))
            relationship_id = care.start(
                conn,
                patient_id=patient_id,
                practitioner_id=practitioner_id,
                basis=care.CareBasis.REFERRAL,
                now=now,
                until=until,
                source_id=actor.user_id,
            )
            attempt.target("CareTeam", relationship_id)
            notify(
                conn,
                patient_id,
                NoticeKind.REFERRED,
                now,
                actor_id=actor.user_id,
                practitioner_id=practitioner_id,
            )
            return relationship_id

        return self.door.run(attempt, work)
