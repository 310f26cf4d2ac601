"""Break-the-glass: emergency read access for a practitioner outside the care team.

The practitioner, after a fresh step-up, declares an emergency with a written reason; they get
READ access to that patient for a limited time (default one hour). Then:

* the reason is sealed with the patient's data key (it may hold health data) and never stored
  in clear; only the patient (their own record) and the DPO reviewing it can open it, audited;
* the patient gets a notice (``NoticeKind.BREAK_GLASS_ACCESS``: who, grant id, until when);
* the audit marks it: DICOM 110113 Security Alert, subtype 110127 Emergency Override Started,
  purpose ETREAT; its end (early stop or expiry closed by :meth:`BreakGlassService.close_expired`)
  is subtype 110138 Emergency Override Stopped;
* the DPO sees it in :func:`pending_reviews` until they :meth:`~BreakGlassService.review` it.

Every read under the grant is decided by :func:`secretum.policy.decide.decide` with
``facts.break_glass_active`` (from :func:`secretum.policy.facts.load_facts`): the decision says
``break_glass=True`` and the repository audits that read with purpose ETREAT. Grants expire by
time alone: every check takes ``now``.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import Guard
from secretum.access.model import AUDIT_PURPOSE, Action, Decision, Purpose, Resource, Role
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.crypto.context import RecordContext
from secretum.crypto.records import open_sealed, seal
from secretum.keys.keyring import KeyRing
from secretum.notices.store import NoticeKind, notify
from secretum.policy.grants import (
    Grant,
    ReviewOutcome,
    close_grant,
    expired_unclosed,
    get_grant,
    grants_of_patient,
    has_active_grant,
    insert_grant,
    insert_review,
    pending_reviews,
    sealed_reason,
)
from secretum.policy.tables import utc

__all__ = [
    "DEFAULT_DURATION",
    "MAX_DURATION",
    "AlreadyReviewed",
    "BreakGlassService",
    "Grant",
    "ReviewOutcome",
    "UnknownGrant",
    "grants_of_patient",
    "has_active_grant",
    "pending_reviews",
]

DEFAULT_DURATION = timedelta(hours=1)
#: no grant outlives this, whatever the caller asks
MAX_DURATION = timedelta(hours=12)
MAX_REASON_CHARS = 2000
EMERGENCY_OVERRIDE_STARTED = "110127"
EMERGENCY_OVERRIDE_STOPPED = "110138"
#: the sealed reason's record type (part of the sealing context)
REASON_RECORD_TYPE = "BreakGlassReason"
#: the actor id the periodic duty writes in the audit
SYSTEM_ACTOR = "secretum"
#: Only the holder of a grant stops it (a rule of the use case, not of the policy tables).
HOLDER = Decision(True, "allow.grant-holder")
NOT_HOLDER = Decision(False, "deny.not-grant-holder")


class AlreadyReviewed(ValueError):
    """The grant was reviewed already (a second submit): the first review stands."""


class UnknownGrant(LookupError):  # a LookupError: the door audits it as the caller's error
    """No break-the-glass grant with that id."""


def _reason_context(grant_id: str, patient_id: str) -> RecordContext:
    return RecordContext(REASON_RECORD_TYPE, grant_id, patient_id, 1)


class BreakGlassService:
    """Declares, stops, closes, reviews break-the-glass grants: each one use case through the
    door (decided once, audited once, refused attempts included), in its own transaction.

    :param duration: how long a grant lasts unless the declaration asks for less.
    """

    def __init__(
        self,
        engine: Engine,
        keyring: KeyRing,
        audit: AuditLog,
        guard: Guard,
        *,
        duration: timedelta = DEFAULT_DURATION,
    ) -> None:
        if not timedelta(0) < duration <= MAX_DURATION:
            raise ValueError("a break-the-glass grant lasts more than 0 and at most 12 hours")
        self.door = Door(engine, audit, guard)
        self.keyring = keyring
        self.audit = audit
        self.duration = duration

    def declare(
        self,
        ctx: RequestContext,
        patient_id: str,
        reason: str,
        *,
        duration: timedelta | None = None,
    ) -> Grant:
        """Open a grant for ``ctx.actor`` on ``patient_id`` from ``ctx.now``.

        Raises :class:`~secretum.access.errors.AccessDenied` unless the policy allows
        ``Action.BREAK_GLASS`` (a practitioner with a fresh step-up: otherwise
        :class:`~secretum.access.errors.StepUpRequired`), and :class:`ValueError` for a blank
        or overlong reason. Audited as DCM 110113 Security Alert, 110127 Emergency Override
        Started, purpose ETREAT.
        """
        emergency = ctx.for_purpose(Purpose.EMERGENCY)
        attempt = Attempt(
            emergency, EventType.SECURITY_ALERT, EMERGENCY_OVERRIDE_STARTED, EventAction.EXECUTE
        )
        attempt.target("Patient", patient_id, patient_id)
        now, actor = utc(ctx.now), ctx.actor

        def work(conn: Connection) -> Grant:
            text = reason.strip()
            if not text:
                raise ValueError("break-the-glass needs a written reason")
            if len(text) > MAX_REASON_CHARS:
                raise ValueError(f"the reason is limited to {MAX_REASON_CHARS} characters")
            length = self.duration if duration is None else duration
            if not timedelta(0) < length <= MAX_DURATION:
                raise ValueError("a break-the-glass grant lasts more than 0 and at most 12 hours")
            resource = Resource("Patient", patient_id=patient_id, resource_id=patient_id)
            self.door.authorize(conn, attempt, Action.BREAK_GLASS, resource)
            grant_id = secrets.token_hex(16)
            key = self.keyring.data_key(patient_id, create=True)
            sealed = seal(key, text.encode("utf-8"), _reason_context(grant_id, patient_id))
            grant = Grant(grant_id, patient_id, actor.user_id, now, now + length)
            insert_grant(
                conn,
                grant_id=grant_id,
                patient_id=patient_id,
                practitioner_id=actor.user_id,
                key_id=key.key_id,
                reason_sealed=sealed,
                granted_at=grant.granted_at,
                expires_at=grant.expires_at,
            )
            notify(
                conn,
                patient_id,
                NoticeKind.BREAK_GLASS_ACCESS,
                now,
                actor_id=actor.user_id,
                grant_id=grant_id,
                until=grant.expires_at.isoformat(),
            )
            return grant

        return self.door.run(attempt, work)

    def stop(self, ctx: RequestContext, grant_id: str) -> bool:
        """The practitioner ends their own grant early; False if it was already closed.
        Only the holder stops a grant (AccessDenied otherwise). Audited as 110138 Emergency
        Override Stopped."""
        emergency = ctx.for_purpose(Purpose.EMERGENCY)
        attempt = Attempt(
            emergency, EventType.SECURITY_ALERT, EMERGENCY_OVERRIDE_STOPPED, EventAction.EXECUTE
        )
        actor = ctx.actor

        def work(conn: Connection) -> bool:
            grant = self._grant(conn, grant_id)
            attempt.target("Patient", grant.patient_id, grant.patient_id)
            holder = actor.role is Role.PRACTITIONER and actor.user_id == grant.practitioner_id
            self.door.rule(attempt, HOLDER if holder else NOT_HOLDER)
            return close_grant(conn, grant_id, utc(ctx.now), actor.user_id)

        return self.door.run(attempt, work)

    def close_expired(self, conn: Connection, now: datetime) -> int:
        """Periodic duty: close grants past expiry, one 110138 audit entry each."""
        closed = 0
        for grant in expired_unclosed(conn, now):
            if close_grant(conn, grant.grant_id, grant.expires_at, SYSTEM_ACTOR):
                event = self._event(
                    SYSTEM_ACTOR, "system", grant.patient_id, utc(now), EMERGENCY_OVERRIDE_STOPPED
                )
                self.audit.append(conn, event)
                closed += 1
        return closed

    def review(self, ctx: RequestContext, grant_id: str, outcome: ReviewOutcome) -> Grant:
        """The DPO records their conclusion on ``grant_id``; it leaves the pending list.
        Audited as DCM 110113 Security Alert, U, purpose HOPERAT."""
        operations = ctx.for_purpose(Purpose.OPERATIONS)
        attempt = Attempt(operations, EventType.SECURITY_ALERT, None, EventAction.UPDATE)

        def work(conn: Connection) -> Grant:
            grant = self._grant(conn, grant_id)
            resource = Resource(
                "BreakGlassGrant", patient_id=grant.patient_id, resource_id=grant_id
            )
            self.door.authorize(conn, attempt, Action.REVIEW_BREAK_GLASS, resource)
            attempt.target("Patient", grant.patient_id, grant.patient_id)
            if grant.review is not None:
                raise AlreadyReviewed("this grant was reviewed already")
            try:
                insert_review(
                    conn, grant_id, ctx.actor.user_id, ReviewOutcome(outcome), utc(ctx.now)
                )
            except IntegrityError as exc:  # reviewed meanwhile, by a concurrent request
                raise AlreadyReviewed("this grant was reviewed already") from exc
            reviewed = get_grant(conn, grant_id)
            assert reviewed is not None
            return reviewed

        return self.door.run(attempt, work)

    def read_reason(self, ctx: RequestContext, grant_id: str) -> str:
        """Open the sealed reason, for the DPO reviewing the grant or the patient whose record
        it is; audited (a read of the Patient record's break-the-glass justification: DCM
        110113, R)."""
        if ctx.actor.role is Role.DPO:
            action, purpose = Action.REVIEW_BREAK_GLASS, Purpose.OPERATIONS
        else:
            action, purpose = Action.READ, Purpose.PATIENT_REQUEST
        attempt = Attempt(
            ctx.for_purpose(purpose), EventType.SECURITY_ALERT, None, EventAction.READ
        )

        def work(conn: Connection) -> str:
            found = sealed_reason(conn, grant_id)
            if found is None:
                raise UnknownGrant(grant_id)
            patient_id, key_id, sealed = found
            resource = Resource("BreakGlassGrant", patient_id=patient_id, resource_id=grant_id)
            self.door.authorize(conn, attempt, action, resource)
            attempt.target("Patient", patient_id, patient_id)
            key = self.keyring.data_key_for(patient_id, key_id)
            return open_sealed(key, sealed, _reason_context(grant_id, patient_id)).decode("utf-8")

        return self.door.read(attempt, work)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _grant(conn: Connection, grant_id: str) -> Grant:
        grant = get_grant(conn, grant_id)
        if grant is None:
            raise UnknownGrant(grant_id)
        return grant

    @staticmethod
    def _event(
        actor_id: str,
        actor_role: str,
        patient_id: str,
        now: datetime,
        subtype: str,
        *,
        source_address: str | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            recorded=now,
            event_type=EventType.SECURITY_ALERT,
            action=EventAction.EXECUTE,
            actor_id=actor_id,
            actor_role=actor_role,
            subtype=subtype,
            resource_type="Patient",
            resource_id=patient_id,
            patient_id=patient_id,
            purpose=AUDIT_PURPOSE[Purpose.EMERGENCY],
            source_address=source_address,
        )
