"""The DPO's oversight of the audit log, as guarded and audited use cases: verify the whole log
(and keep the result), the history of those verifications, browse the entries with filters,
the history of break-the-glass reviews.

Each call is decided first (``READ_AUDIT``, or ``REVIEW_BREAK_GLASS`` for the reviews, purpose
OPERATIONS: only a DPO) and leaves one audit entry, DCM 110101 Audit Log Used (action E for a
verification, R for a read): looking at the audit is itself on record. Everything returned is
ids, codes, times and counts: the audit holds no health data.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection, Engine

from secretum.audit import browse
from secretum.audit.browse import EntryFilter, EntryPage, Verification
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.policy.decide import require
from secretum.policy.grants import Grant, reviewed_grants
from secretum.policy.model import AUDIT_PURPOSE, Action, Actor, Facts, Purpose, Resource


class InvalidQuery(ValueError):
    """A page size or cursor out of range."""


class AuditOversight:
    """The DPO's use cases on the audit log (see the module docstring)."""

    def __init__(self, engine: Engine, audit: AuditLog, public_key: Ed25519PublicKey) -> None:
        self.engine = engine
        self.audit = audit
        self.public_key = public_key

    def _used(
        self,
        conn: Connection,
        actor: Actor,
        now: datetime,
        action: EventAction,
        *,
        subtype: str | None = None,
        patient_id: str | None = None,
        source_address: str | None = None,
    ) -> None:
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.AUDIT_LOG_USED,
                action=action,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                subtype=subtype,
                resource_type="Patient" if patient_id else None,
                resource_id=patient_id,
                patient_id=patient_id,
                purpose=AUDIT_PURPOSE[Purpose.OPERATIONS],
                source_address=source_address,
            ),
        )

    @staticmethod
    def _may_read(actor: Actor, now: datetime) -> None:
        require(actor, Action.READ_AUDIT, Resource("AuditEvent"), Purpose.OPERATIONS, now, Facts())

    def verify(
        self, actor: Actor, now: datetime, *, source_address: str | None = None
    ) -> Verification:
        """Verify the whole log now (RFC 9162 tree, signed checkpoints, witness file) and keep
        the outcome; the page then shows it from :meth:`verifications` (POST, then 303)."""
        self._may_read(actor, now)
        report = self.audit.verify(self.public_key)
        with self.engine.begin() as conn:
            browse.record_verification(conn, report, actor.user_id, now)
            self._used(conn, actor, now, EventAction.EXECUTE, source_address=source_address)
            return browse.recent_verifications(conn, 1)[0]

    def verifications(
        self,
        actor: Actor,
        now: datetime,
        *,
        limit: int = browse.HISTORY,
        source_address: str | None = None,
    ) -> list[Verification]:
        """The last verifications of the log, newest first (who, when, ok, first finding)."""
        self._may_read(actor, now)
        if not 1 <= limit <= browse.MAX_PAGE:
            raise InvalidQuery(f"1 to {browse.MAX_PAGE} verifications")
        with self.engine.begin() as conn:
            self._used(conn, actor, now, EventAction.READ, source_address=source_address)
            return browse.recent_verifications(conn, limit)

    def browse(
        self,
        actor: Actor,
        now: datetime,
        wanted: EntryFilter,
        *,
        limit: int = 50,
        before: int | None = None,
        source_address: str | None = None,
    ) -> EntryPage:
        """Audit entries matching ``wanted``, newest first. A search about one patient is
        recorded with that patient's id, so it shows in their access log too."""
        self._may_read(actor, now)
        if not 1 <= limit <= browse.MAX_PAGE or (before is not None and before < 0):
            raise InvalidQuery(f"a page holds 1 to {browse.MAX_PAGE} entries, cursor >= 0")
        with self.engine.begin() as conn:
            self._used(
                conn,
                actor,
                now,
                EventAction.READ,
                subtype="search",
                patient_id=wanted.patient_id or None,
                source_address=source_address,
            )
            return browse.browse_entries(conn, wanted, limit=limit, before=before)

    def reviews(
        self,
        actor: Actor,
        now: datetime,
        *,
        limit: int = 50,
        offset: int = 0,
        source_address: str | None = None,
    ) -> list[Grant]:
        """Break-the-glass grants already reviewed, the latest review first: who reviewed
        which grant, when, with which outcome (ids and times; the reason stays sealed)."""
        resource = Resource("BreakGlassGrant")
        require(actor, Action.REVIEW_BREAK_GLASS, resource, Purpose.OPERATIONS, now, Facts())
        if not 1 <= limit <= browse.MAX_PAGE or offset < 0:
            raise InvalidQuery(f"a page holds 1 to {browse.MAX_PAGE} reviews, offset >= 0")
        with self.engine.begin() as conn:
            self._used(
                conn, actor, now, EventAction.READ, subtype="search", source_address=source_address
            )
            return reviewed_grants(conn, limit=limit, offset=offset)
