"""Read models of the care relationships for the pages: a practitioner's patients and grants,
a patient's care team, the restriction state. Ids, codes and times only (no health data), in
a read-only connection; what they lead to (a record, a search) goes through the door."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.engine import Engine

from secretum.policy import care
from secretum.policy.grants import Grant, get_grant
from secretum.policy.restriction import is_restricted
from secretum.policy.tables import break_glass_grants, care_relationships
from secretum.storage.db import reader


@dataclass(frozen=True)
class CareTeam:
    """A patient's care relationships (ended ones too) and who they named for restricted data."""

    relationships: list[care.CareRelationship]
    named: list[str]


def _active(now: datetime) -> ColumnElement[bool]:
    c = care_relationships.c
    return and_(
        c.started_at <= now,
        or_(c.ends_at.is_(None), c.ends_at > now),
        or_(c.ended_at.is_(None), c.ended_at > now),
    )


class CareReads:
    """What the care pages show about care relationships, grants and restrictions."""

    def __init__(self, engine: Engine) -> None:
        self.reads = reader(engine)

    def patients_of(self, practitioner_id: str, now: datetime) -> list[str]:
        """Ids of the patients whose care team holds ``practitioner_id`` at ``now``."""
        c = care_relationships.c
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(c.patient_id)
                .where(c.practitioner_id == practitioner_id, _active(now.astimezone(UTC)))
                .distinct()
                .order_by(c.patient_id)
            ).scalars()
            return list(rows)

    def referred_patients_of(self, practitioner_id: str, now: datetime) -> list[str]:
        """Ids of the patients referred to ``practitioner_id`` (a referral holding at ``now``):
        the radiologist's worklist starts from them."""
        c = care_relationships.c
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(c.patient_id)
                .where(
                    c.practitioner_id == practitioner_id,
                    c.basis == care.CareBasis.REFERRAL.value,
                    _active(now.astimezone(UTC)),
                )
                .distinct()
                .order_by(c.patient_id)
            ).scalars()
            return list(rows)

    def care_relationships_of(
        self, patient_id: str, practitioner_id: str, now: datetime
    ) -> list[care.CareRelationship]:
        """The relationships between one patient and one practitioner holding at ``now``."""
        with self.reads.connect() as conn:
            team = care.care_team(conn, patient_id, now)
        return [r for r in team if r.practitioner_id == practitioner_id]

    def care_team(self, patient_id: str, now: datetime) -> CareTeam:
        with self.reads.connect() as conn:
            return CareTeam(
                care.relationships(conn, patient_id),
                care.named_for_restricted(conn, patient_id, now),
            )

    def grants_held(self, practitioner_id: str, now: datetime) -> list[Grant]:
        """The practitioner's break-the-glass grants active at ``now``, soonest end first."""
        g = break_glass_grants.c
        with self.reads.connect() as conn:
            ids = conn.execute(
                select(g.grant_id).where(
                    g.practitioner_id == practitioner_id, g.expires_at > now.astimezone(UTC)
                )
            ).scalars()
            grants = [get_grant(conn, grant_id) for grant_id in list(ids)]
        active = [gr for gr in grants if gr is not None and gr.active(now)]
        return sorted(active, key=lambda gr: (gr.expires_at, gr.grant_id))

    def restricted(self, patient_id: str, now: datetime) -> bool:
        """Whether the patient restricted the processing of their data (GDPR art. 18)."""
        with self.reads.connect() as conn:
            return is_restricted(conn, patient_id, now)
