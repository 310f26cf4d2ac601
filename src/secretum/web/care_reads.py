"""Read models of the care pages (patient, practice, DPO) that no context service offers yet.

The routes stay free of SQL: what they need to *show* around the guarded use cases (the names of
the staff, a practitioner's patients and grants, a patient's care team, notices, the
restriction state, the DPO's audit status) is read here, through the contexts' store
primitives. Nothing here returns health data: ids, codes, times, and the names of staff members
(practitioners, DPOs, administrators: professional identities shown to the patients whose
records they touch).

Two reads are actions of their own and go through the policy and the audit like every use case:
:func:`audit_status` (the DPO reads the audit log's state, DCM 110101 Audit Log Used) and
:func:`break_glass_queue` (the DPO's review list, with what was opened under each grant: ids
and codes only; decided and audited the same way).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.audit.verify import VerifyReport
from secretum.identity.model import AccountStatus
from secretum.notices.store import Notice, list_notices
from secretum.policy import care
from secretum.policy.decide import require
from secretum.policy.grants import Grant, get_grant, pending_reviews
from secretum.policy.model import AUDIT_PURPOSE, Action, Actor, Facts, Purpose, Resource, Role
from secretum.policy.restriction import is_restricted
from secretum.policy.tables import break_glass_grants, care_relationships
from secretum.rights.access_log import AccessEntry, entries_under_grant

if TYPE_CHECKING:
    from secretum.bootstrap import Platform

STAFF_ROLES = frozenset({Role.PRACTITIONER, Role.DPO, Role.ADMIN})


@dataclass(frozen=True)
class StaffMember:
    """A staff account as patients see it: name, role, specialty (no e-mail, no RPPS)."""

    user_id: str
    role: Role
    display_name: str
    specialty: str | None


def _read(platform: Platform) -> Connection:
    return platform.engine.connect().execution_options(sqlite_begin="DEFERRED")


def staff(
    platform: Platform, ids: Iterable[str] | None = None, *, active_only: bool = False
) -> dict[str, StaffMember]:
    """Staff accounts by user id (only ``ids`` if given), to name who did what: a practitioner
    locked or disabled since keeps their name in a patient's access log. ``active_only`` for
    choices (whom to invite). Patients are never listed."""
    wanted = None if ids is None else set(ids)
    accounts = platform.services.identity.core.accounts
    statuses = (
        {AccountStatus.ACTIVE}
        if active_only
        else {AccountStatus.ACTIVE, AccountStatus.LOCKED, AccountStatus.DISABLED}
    )
    with _read(platform) as conn:
        rows = [
            r
            for r in accounts.list(conn)
            if r.role in STAFF_ROLES
            and r.account.status in statuses
            and (wanted is None or r.user_id in wanted)
        ]
    found = {}
    for row in rows:
        personal = accounts.open_personal(row)
        found[row.user_id] = StaffMember(
            row.user_id, row.role, personal.display_name, row.account.specialty
        )
    return found


def is_patient(platform: Platform, user_id: str) -> bool:
    """Whether ``user_id`` is a patient's account (any status)."""
    with _read(platform) as conn:
        row = platform.services.identity.core.accounts.by_id(conn, user_id)
    return row is not None and row.role is Role.PATIENT


def practitioners(platform: Platform) -> list[StaffMember]:
    """Active practitioners, by name (the choices of a patient's invitation form)."""
    found = [m for m in staff(platform, active_only=True).values() if m.role is Role.PRACTITIONER]
    return sorted(found, key=lambda m: (m.display_name.casefold(), m.user_id))


def _active(now: datetime) -> object:
    c = care_relationships.c
    return and_(
        c.started_at <= now,
        or_(c.ends_at.is_(None), c.ends_at > now),
        or_(c.ended_at.is_(None), c.ended_at > now),
    )


def patients_of(platform: Platform, practitioner_id: str, now: datetime) -> list[str]:
    """Ids of the patients whose care team holds ``practitioner_id`` at ``now``."""
    c = care_relationships.c
    with _read(platform) as conn:
        rows = conn.execute(
            select(c.patient_id)
            .where(c.practitioner_id == practitioner_id, _active(now.astimezone(UTC)))  # type: ignore[arg-type]
            .distinct()
            .order_by(c.patient_id)
        ).scalars()
        return list(rows)


def care_relationships_of(
    platform: Platform, patient_id: str, practitioner_id: str, now: datetime
) -> list[care.CareRelationship]:
    """The relationships between one patient and one practitioner holding at ``now``."""
    with _read(platform) as conn:
        team = care.care_team(conn, patient_id, now)
    return [r for r in team if r.practitioner_id == practitioner_id]


@dataclass(frozen=True)
class CareTeam:
    """A patient's care relationships (ended ones too) and who they named for restricted data."""

    relationships: list[care.CareRelationship]
    named: list[str]


def care_team(platform: Platform, patient_id: str, now: datetime) -> CareTeam:
    with _read(platform) as conn:
        return CareTeam(
            care.relationships(conn, patient_id), care.named_for_restricted(conn, patient_id, now)
        )


def grants_held(platform: Platform, practitioner_id: str, now: datetime) -> list[Grant]:
    """The practitioner's break-the-glass grants active at ``now``, soonest end first."""
    g = break_glass_grants.c
    with _read(platform) as conn:
        ids = conn.execute(
            select(g.grant_id).where(
                g.practitioner_id == practitioner_id, g.expires_at > now.astimezone(UTC)
            )
        ).scalars()
        grants = [get_grant(conn, grant_id) for grant_id in list(ids)]
    active = [gr for gr in grants if gr is not None and gr.active(now)]
    return sorted(active, key=lambda gr: (gr.expires_at, gr.grant_id))


def notices(platform: Platform, user_id: str) -> list[Notice]:
    """The user's notices, newest first (ids and codes only)."""
    with _read(platform) as conn:
        return list_notices(conn, user_id)


def restricted(platform: Platform, patient_id: str, now: datetime) -> bool:
    """Whether the patient restricted the processing of their data (GDPR art. 18) at ``now``."""
    with _read(platform) as conn:
        return is_restricted(conn, patient_id, now)


# -- the DPO ----------------------------------------------------------------------------------


def break_glass_queue(
    platform: Platform, actor: Actor, now: datetime, *, source_address: str | None = None
) -> list[tuple[Grant, list[AccessEntry]]]:
    """Grants no DPO has reviewed yet (ids and times; the reason stays sealed), each with what
    its holder opened under it (audit entries: ids and codes). Decided: ``REVIEW_BREAK_GLASS``
    on operational data (AccessDenied otherwise); audited as DCM 110101 Audit Log Used, R."""
    resource = Resource("BreakGlassGrant")
    require(actor, Action.REVIEW_BREAK_GLASS, resource, Purpose.OPERATIONS, now, Facts())
    platform.audit.append_committed(
        AuditEvent(
            recorded=now,
            event_type=EventType.AUDIT_LOG_USED,
            action=EventAction.READ,
            actor_id=actor.user_id,
            actor_role=str(actor.role),
            subtype="search",
            purpose=AUDIT_PURPOSE[Purpose.OPERATIONS],
            source_address=source_address,
        )
    )
    with _read(platform) as conn:
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


@dataclass(frozen=True)
class AuditStatus:
    """The audit log's state for the DPO: size, root, last signed checkpoint, verify report."""

    tree_size: int
    root_hex: str
    checkpoint_size: int | None
    checkpoint_at: datetime | None
    report: VerifyReport | None


def audit_status(
    platform: Platform,
    actor: Actor,
    now: datetime,
    *,
    run_verify: bool = False,
    source_address: str | None = None,
) -> AuditStatus:
    """The DPO reads the audit log's state, and verifies it on demand (RFC 9162 tree, signed
    checkpoints, witness file). Decided (``READ_AUDIT``) and audited: DCM 110101 Audit Log Used,
    action E (verify) or R, purpose HOPERAT."""
    resource = Resource("AuditEvent")
    require(actor, Action.READ_AUDIT, resource, Purpose.OPERATIONS, now, Facts())
    log = platform.audit
    report = log.verify(platform.audit_public_key) if run_verify else None
    size, root = log.tree_head()
    checkpoints = log.checkpoints()
    last = checkpoints[-1] if checkpoints else None
    with platform.engine.begin() as conn:
        log.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.AUDIT_LOG_USED,
                action=EventAction.EXECUTE if run_verify else EventAction.READ,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                purpose=AUDIT_PURPOSE[Purpose.OPERATIONS],
                source_address=source_address,
            ),
        )
    return AuditStatus(
        tree_size=size,
        root_hex=root.hex(),
        checkpoint_size=None if last is None else last.tree_size,
        checkpoint_at=None
        if last is None
        else datetime.fromtimestamp(last.timestamp_ms / 1000, tz=UTC),
        report=report,
    )
