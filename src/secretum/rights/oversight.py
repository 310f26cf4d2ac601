"""The DPO's oversight: the break-the-glass review list and the audit log's state.

Both are reads of the audit trail, and both are use cases of their own: decided by the policy
through the door (``REVIEW_BREAK_GLASS`` and ``READ_AUDIT`` on operational data) and audited
once, refused attempts included, as DCM 110101 Audit Log Used, purpose HOPERAT. Ids, codes and
times only: a grant's reason stays sealed (see
:meth:`secretum.policy.breakglass.BreakGlassService.read_reason`).
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
from secretum.audit.log import AuditLog
from secretum.audit.model import EventAction, EventType
from secretum.audit.verify import VerifyReport
from secretum.policy.grants import Grant, pending_reviews
from secretum.rights.access_log import AccessEntry, entries_under_grant


@dataclass(frozen=True)
class AuditStatus:
    """The audit log's state for the DPO: size, root, last signed checkpoint, verify report."""

    tree_size: int
    root_hex: str
    checkpoint_size: int | None
    checkpoint_at: datetime | None
    report: VerifyReport | None


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
