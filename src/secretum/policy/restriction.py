"""The patient's restriction of processing (GDPR art. 18), as an append-only history.

Each change adds a row numbered 1, 2, 3... per patient; the state at ``now`` is the last row set
at or before ``now``. While restricted, the policy lets nobody but the patient touch their
health data (:data:`secretum.policy.rules.GUARDS`). The patient's request goes through
:meth:`secretum.policy.choices.PatientChoices.set_restriction`, which decides and audits;
these are the store's primitives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, and_, bindparam, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from secretum.policy.tables import from_db, processing_restrictions, utc
from secretum.storage.integrity import RowSpec

#: What the tag of a restriction change covers (see :mod:`secretum.storage.integrity`): a
#: change forged, flipped or moved to another patient or number is refused by the decision.
RESTRICTION_SPEC = RowSpec(
    "processing_restrictions", ("patient_id", "seq"), ("restricted", "actor_id", "set_at")
)


@dataclass(frozen=True, slots=True)
class RestrictionChange:
    seq: int
    restricted: bool
    actor_id: str
    set_at: datetime


def set_restriction(
    conn: Connection, patient_id: str, on: bool, now: datetime, *, actor_id: str | None = None
) -> int:
    """Restrict (``on``) or lift the restriction of ``patient_id``'s data from ``now``.

    ``actor_id`` defaults to the patient. Returns the change's number.
    """
    r = processing_restrictions.c
    last = conn.execute(select(func.max(r.seq)).where(r.patient_id == patient_id)).scalar()
    seq = (last or 0) + 1
    row = dict(
        patient_id=patient_id,
        seq=seq,
        restricted=bool(on),
        actor_id=actor_id or patient_id,
        set_at=utc(now),
    )
    conn.execute(insert(processing_restrictions).values(**RESTRICTION_SPEC.tagged(conn, row)))
    return seq


def in_force_and_later(
    patient_id: ColumnElement[Any], now: ColumnElement[Any]
) -> ColumnElement[bool]:
    """The condition on rows of ``processing_restrictions``: the change in force at ``now``
    and every later one. Their tags are checked (not only the one in force), so that a change
    pushed into the future to bring an older one back is caught."""
    r = processing_restrictions.c
    in_force = (
        select(func.coalesce(func.max(r.seq), 0))
        .where(r.patient_id == patient_id, r.set_at <= now)
        .scalar_subquery()
    )
    return and_(r.patient_id == patient_id, r.seq >= in_force)


_IN_FORCE_AND_LATER = select(processing_restrictions).where(
    in_force_and_later(
        bindparam("patient_id", type_=String()), bindparam("now", type_=DateTime(timezone=True))
    )
)


def is_restricted(conn: Connection, patient_id: str, now: datetime) -> bool:
    """Whether the processing of ``patient_id``'s data is restricted at ``now`` (the rows it
    rests on authenticated: RowTampered if one is not)."""
    now = utc(now)
    state: tuple[int, bool] | None = None
    params = {"patient_id": patient_id, "now": now}
    for row in conn.execute(_IN_FORCE_AND_LATER, params).mappings():
        RESTRICTION_SPEC.check(conn, row)
        set_at = from_db(row["set_at"])
        if set_at is not None and set_at <= now and (state is None or row["seq"] > state[0]):
            state = (row["seq"], bool(row["restricted"]))
    return state is not None and state[1]


def restriction_history(conn: Connection, patient_id: str) -> list[RestrictionChange]:
    """Every change, oldest first."""
    r = processing_restrictions.c
    rows = conn.execute(
        select(r.seq, r.restricted, r.actor_id, r.set_at)
        .where(r.patient_id == patient_id)
        .order_by(r.seq)
    ).all()
    return [
        RestrictionChange(seq, bool(restricted), actor_id, from_db(set_at) or set_at)
        for seq, restricted, actor_id, set_at in rows
    ]
