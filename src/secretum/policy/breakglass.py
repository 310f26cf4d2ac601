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

from sqlalchemy.engine import Connection

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.crypto.context import RecordContext
from secretum.crypto.records import open_sealed, seal
from secretum.keys.keyring import KeyRing
from secretum.notices.store import NoticeKind, notify
from secretum.policy.decide import require
from secretum.policy.facts import load_facts
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
from secretum.policy.model import AUDIT_PURPOSE, Action, Actor, Facts, Purpose, Resource, Role
from secretum.policy.tables import utc

__all__ = [
    "DEFAULT_DURATION",
    "MAX_DURATION",
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


class UnknownGrant(LookupError):
    """No break-the-glass grant with that id."""


def _reason_context(grant_id: str, patient_id: str) -> RecordContext:
    return RecordContext(REASON_RECORD_TYPE, grant_id, patient_id, 1)


class BreakGlassService:
    """Declares, stops, closes, reviews break-the-glass grants; audited, in the caller's
    transaction.

    :param duration: how long a grant lasts unless the declaration asks for less.
    """

    def __init__(
        self, keyring: KeyRing, audit: AuditLog, *, duration: timedelta = DEFAULT_DURATION
    ) -> None:
        if not timedelta(0) < duration <= MAX_DURATION:
            raise ValueError("a break-the-glass grant lasts more than 0 and at most 12 hours")
        self.keyring = keyring
        self.audit = audit
        self.duration = duration

    def declare(
        self,
        conn: Connection,
        actor: Actor,
        patient_id: str,
        reason: str,
        now: datetime,
        *,
        duration: timedelta | None = None,
        source_address: str | None = None,
    ) -> Grant:
        """Open a grant for ``actor`` on ``patient_id`` from ``now``.

        Raises :class:`~secretum.policy.decide.AccessDenied` unless the policy allows
        ``Action.BREAK_GLASS`` (a practitioner with a fresh step-up; the decision then says
        ``requires=("step-up",)``), and :class:`ValueError` for a blank or overlong reason.
        """
        now = utc(now)
        reason = reason.strip()
        if not reason:
            raise ValueError("break-the-glass needs a written reason")
        if len(reason) > MAX_REASON_CHARS:
            raise ValueError(f"the reason is limited to {MAX_REASON_CHARS} characters")
        length = self.duration if duration is None else duration
        if not timedelta(0) < length <= MAX_DURATION:
            raise ValueError("a break-the-glass grant lasts more than 0 and at most 12 hours")
        resource = Resource("Patient", patient_id=patient_id, resource_id=patient_id)
        facts = load_facts(conn, actor, patient_id, now)
        require(actor, Action.BREAK_GLASS, resource, Purpose.EMERGENCY, now, facts)
        grant_id = secrets.token_hex(16)
        event = self._event(
            actor.user_id,
            str(actor.role),
            patient_id,
            now,
            EMERGENCY_OVERRIDE_STARTED,
            source_address=source_address,
        )
        key = self.keyring.data_key(patient_id, create=True)
        sealed = seal(key, reason.encode("utf-8"), _reason_context(grant_id, patient_id))
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
        self.audit.append(conn, event)
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

    def stop(
        self,
        conn: Connection,
        actor: Actor,
        grant_id: str,
        now: datetime,
        *,
        source_address: str | None = None,
    ) -> bool:
        """The practitioner ends their own grant early; False if it was already closed."""
        grant = self._grant(conn, grant_id)
        if actor.role is not Role.PRACTITIONER or actor.user_id != grant.practitioner_id:
            raise PermissionError("only the holder of a grant stops it")
        if not close_grant(conn, grant_id, now, actor.user_id):
            return False
        self.audit.append(
            conn,
            self._event(
                actor.user_id,
                str(actor.role),
                grant.patient_id,
                utc(now),
                EMERGENCY_OVERRIDE_STOPPED,
                source_address=source_address,
            ),
        )
        return True

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

    def review(
        self,
        conn: Connection,
        grant_id: str,
        dpo_actor: Actor,
        outcome: ReviewOutcome,
        now: datetime,
        *,
        source_address: str | None = None,
    ) -> Grant:
        """The DPO records their conclusion on ``grant_id``; it leaves the pending list."""
        grant = self._grant(conn, grant_id)
        now = utc(now)
        resource = Resource("BreakGlassGrant", patient_id=grant.patient_id, resource_id=grant_id)
        require(dpo_actor, Action.REVIEW_BREAK_GLASS, resource, Purpose.OPERATIONS, now, Facts())
        outcome = ReviewOutcome(outcome)
        insert_review(conn, grant_id, dpo_actor.user_id, outcome, now)
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.SECURITY_ALERT,
                action=EventAction.UPDATE,
                actor_id=dpo_actor.user_id,
                actor_role=str(dpo_actor.role),
                resource_type="Patient",
                resource_id=grant.patient_id,
                patient_id=grant.patient_id,
                purpose=AUDIT_PURPOSE[Purpose.OPERATIONS],
                source_address=source_address,
            ),
        )
        reviewed = get_grant(conn, grant_id)
        assert reviewed is not None
        return reviewed

    def read_reason(
        self,
        conn: Connection,
        actor: Actor,
        grant_id: str,
        now: datetime,
        *,
        source_address: str | None = None,
    ) -> str:
        """Open the sealed reason, for the DPO reviewing the grant or the patient whose record
        it is; audited (a read of the Patient record's break-the-glass justification)."""
        found = sealed_reason(conn, grant_id)
        if found is None:
            raise UnknownGrant(grant_id)
        patient_id, key_id, sealed = found
        now = utc(now)
        if actor.role is Role.DPO:
            action, purpose = Action.REVIEW_BREAK_GLASS, Purpose.OPERATIONS
        else:
            action, purpose = Action.READ, Purpose.PATIENT_REQUEST
        resource = Resource("BreakGlassGrant", patient_id=patient_id, resource_id=grant_id)
        facts = load_facts(conn, actor, patient_id, now)
        require(actor, action, resource, purpose, now, facts)
        key = self.keyring.data_key_for(patient_id, key_id)
        text = open_sealed(key, sealed, _reason_context(grant_id, patient_id)).decode("utf-8")
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.SECURITY_ALERT,
                action=EventAction.READ,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                resource_type="Patient",
                resource_id=patient_id,
                patient_id=patient_id,
                purpose=AUDIT_PURPOSE[purpose],
                source_address=source_address,
            ),
        )
        return text

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
