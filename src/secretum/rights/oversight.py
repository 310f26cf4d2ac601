"""The DPO's oversight: the break-the-glass review list and history, the audit log's state,
its verification on demand (kept, with its history), and browsing its entries with filters.

Each is a use case of its own: decided by the policy through the door (``REVIEW_BREAK_GLASS``
and ``READ_AUDIT`` on operational data) and audited once, refused attempts included, as
DCM 110101 Audit Log Used, purpose HOPERAT. Ids, codes and times only: a grant's reason stays
sealed (see :meth:`secretum.policy.breakglass.BreakGlassService.read_reason`). A search of the
entries about one patient names that patient, so it shows in their access log too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import Guard
from secretum.access.model import Action, Purpose, Resource
from secretum.audit import browse
from secretum.audit.browse import EntryFilter, EntryPage, Verification
from secretum.audit.log import AuditLog
from secretum.audit.model import EventAction, EventType
from secretum.audit.verify import VerifyReport
from secretum.policy.grants import Grant, pending_reviews, reviewed_grants
from secretum.rights.access_log import AccessEntry, entries_under_grant


@dataclass(frozen=True)
class AuditStatus:
    """The audit log's state for the DPO: size, root, last signed checkpoint, verify report."""

    tree_size: int
    root_hex: str
    checkpoint_size: int | None
    checkpoint_at: datetime | None
    report: VerifyReport | None


class InvalidQuery(ValueError):
    """A page size or cursor out of range."""


class OversightService:
    """The DPO's reads of the audit trail, through the door."""

    def __init__(
        self, engine: Engine, audit: AuditLog, guard: Guard, public_key: Ed25519PublicKey
    ) -> None:
        self.door = Door(engine, audit, guard)
        self.public_key = public_key

    def review_queue(self, ctx: RequestContext) -> list[tuple[Grant, list[AccessEntry]]]:
        """Grants no DPO has reviewed yet (ids and times; the reason stays sealed), each with
        what its holder opened under it (audit entries: ids and codes)."""
        operations = ctx.for_purpose(Purpose.OPERATIONS)
        attempt = Attempt(operations, EventType.AUDIT_LOG_USED, "search", EventAction.READ)

        def work(conn: Connection) -> list[tuple[Grant, list[AccessEntry]]]:
            resource = Resource("BreakGlassGrant")
            self.door.authorize(conn, attempt, Action.REVIEW_BREAK_GLASS, resource)
            return [
                (
                    grant,
                    entries_under_grant(
                        conn,
                        grant.patient_id,
                        grant.practitioner_id,
                        grant.granted_at,
                        grant.closed_at or grant.expires_at,
                    ),
                )
                for grant in pending_reviews(conn)
            ]

        return self.door.read(attempt, work)

    def audit_status(self, ctx: RequestContext, *, run_verify: bool = False) -> AuditStatus:
        """The audit log's state, verified on demand (RFC 9162 tree, signed checkpoints,
        witness file): action E (verify) or R."""
        operations = ctx.for_purpose(Purpose.OPERATIONS)
        action = EventAction.EXECUTE if run_verify else EventAction.READ
        attempt = Attempt(operations, EventType.AUDIT_LOG_USED, None, action)
        log = self.door.audit

        def work(conn: Connection) -> AuditStatus:
            self.door.authorize(conn, attempt, Action.READ_AUDIT, Resource("AuditEvent"))
            report = log.verify(self.public_key) if run_verify else None
            size, root = log.tree_head()
            checkpoints = log.checkpoints()
            last = checkpoints[-1] if checkpoints else None
            return AuditStatus(
                tree_size=size,
                root_hex=root.hex(),
                checkpoint_size=None if last is None else last.tree_size,
                checkpoint_at=None
                if last is None
                else datetime.fromtimestamp(last.timestamp_ms / 1000, tz=UTC),
                report=report,
            )

        return self.door.read(attempt, work)

    def _audit_read(
        self, ctx: RequestContext, action: EventAction, subtype: str | None = None
    ) -> Attempt:
        return Attempt(
            ctx.for_purpose(Purpose.OPERATIONS), EventType.AUDIT_LOG_USED, subtype, action
        )

    def verify(self, ctx: RequestContext) -> Verification:
        """Verify the whole log now (RFC 9162 tree, signed checkpoints, witness file) and keep
        the outcome (who, when, ok, first finding: ids and codes); the page then shows it from
        :meth:`verifications` (POST, then 303: a refresh never verifies again). The verification
        runs on a reading connection (it holds no write lock however long the log); its outcome
        is kept in a short transaction of its own."""
        attempt = self._audit_read(ctx, EventAction.EXECUTE)
        log = self.door.audit

        def work(conn: Connection) -> VerifyReport:
            self.door.authorize(conn, attempt, Action.READ_AUDIT, Resource("AuditEvent"))
            return log.verify(self.public_key)

        report = self.door.read(attempt, work)
        with self.door.engine.begin() as conn:
            browse.record_verification(conn, report, ctx.actor.user_id, ctx.now)
            return browse.recent_verifications(conn, 1)[0]

    def verifications(
        self, ctx: RequestContext, *, limit: int = browse.HISTORY
    ) -> list[Verification]:
        """The last verifications of the log, newest first (who, when, ok, first finding)."""
        attempt = self._audit_read(ctx, EventAction.READ)

        def work(conn: Connection) -> list[Verification]:
            self.door.authorize(conn, attempt, Action.READ_AUDIT, Resource("AuditEvent"))
            if not 1 <= limit <= browse.MAX_PAGE:
                raise InvalidQuery(f"1 to {browse.MAX_PAGE} verifications")
            return browse.recent_verifications(conn, limit)

        return self.door.read(attempt, work)

    def browse(
        self,
        ctx: RequestContext,
        wanted: EntryFilter,
        *,
        limit: int = 50,
        before: int | None = None,
    ) -> EntryPage:
        """Audit entries matching ``wanted``, newest first, ``limit`` a page (``before``: the
        cursor). A search about one patient is recorded with that patient's id."""
        attempt = self._audit_read(ctx, EventAction.READ, "search")

        def work(conn: Connection) -> EntryPage:
            self.door.authorize(conn, attempt, Action.READ_AUDIT, Resource("AuditEvent"))
            if wanted.patient_id:
                attempt.target("Patient", wanted.patient_id, wanted.patient_id)
            if not 1 <= limit <= browse.MAX_PAGE or (before is not None and before < 0):
                raise InvalidQuery(f"a page holds 1 to {browse.MAX_PAGE} entries, cursor >= 0")
            return browse.browse_entries(conn, wanted, limit=limit, before=before)

        return self.door.read(attempt, work)

    def reviews(self, ctx: RequestContext, *, limit: int = 50, offset: int = 0) -> list[Grant]:
        """Break-the-glass grants already reviewed, the latest review first: who reviewed
        which grant, when, with which outcome (ids and times; the reason stays sealed)."""
        attempt = self._audit_read(ctx, EventAction.READ, "search")

        def work(conn: Connection) -> list[Grant]:
            resource = Resource("BreakGlassGrant")
            self.door.authorize(conn, attempt, Action.REVIEW_BREAK_GLASS, resource)
            if not 1 <= limit <= browse.MAX_PAGE or offset < 0:
                raise InvalidQuery(f"a page holds 1 to {browse.MAX_PAGE} reviews, offset >= 0")
            return reviewed_grants(conn, limit=limit, offset=offset)

        return self.door.read(attempt, work)
