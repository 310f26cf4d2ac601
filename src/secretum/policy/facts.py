"""Gather the :class:`~secretum.policy.model.Facts` of one request from the stores.

``load_facts(conn, actor, patient_id, now)`` reads, in the caller's transaction and as of
``now``: the patient's active consents (SHARING only when it names this actor), whether the
actor is in the care team, named for restricted data, or holds an unexpired break-the-glass
grant, and whether the patient restricted processing. Nothing is cached, so a withdrawal, an
ended relationship or an expired grant is seen by the very next request.

Repositories call it right before :func:`secretum.policy.decide.decide`, on every read, so it is
one query: the stores' own conditions (:func:`~secretum.consent.store.active_purposes_select`,
:func:`~secretum.policy.care.in_care_team_exists`, ...) joined by ``UNION ALL``, one row per
active consent and one per fact that holds. The statement is built once, from bind parameters;
SQLAlchemy compiles it once and reuses it (what it caches is SQL text, never a result).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    DateTime,
    Select,
    String,
    bindparam,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from secretum.consent.store import active_purposes_select
from secretum.policy.care import in_care_team_exists, named_for_restricted_exists
from secretum.policy.grants import active_grant_exists
from secretum.policy.model import Actor, Facts, Purpose, Role
from secretum.policy.restriction import restricted_condition
from secretum.policy.tables import utc

_PATIENT = bindparam("patient_id", type_=String())
_ACTOR = bindparam("actor_id", type_=String())
_NOW = bindparam("now", type_=DateTime(timezone=True))

#: Names of the rows of the facts query (its second column; the first is a consent's purpose).
CONSENT, RESTRICTED, CARE_TEAM, NAMED, BREAK_GLASS = (
    "consent",
    "restricted",
    "care-team",
    "named",
    "break-glass",
)


def _row(name: str, condition: ColumnElement[Any]) -> Select[Any, str]:
    """``SELECT NULL, '<name>' WHERE <condition>``: one row when the fact holds."""
    return select(null(), literal_column(f"'{name}'", String())).where(condition)


_CONSENTS = active_purposes_select(_PATIENT, _NOW, _ACTOR).add_columns(
    literal_column(f"'{CONSENT}'", String()).label("fact")
)
_RESTRICTED = _row(RESTRICTED, restricted_condition(_PATIENT, _NOW))
#: Any role: the consents and the restriction.
_FACTS: CompoundSelect[Any] = union_all(_CONSENTS, _RESTRICTED)
#: A practitioner: also the care team, the naming for restricted data, break-the-glass.
_PRACTITIONER_FACTS: CompoundSelect[Any] = union_all(
    _CONSENTS,
    _RESTRICTED,
    _row(CARE_TEAM, in_care_team_exists(_ACTOR, _PATIENT, _NOW)),
    _row(NAMED, named_for_restricted_exists(_PATIENT, _ACTOR, _NOW)),
    _row(BREAK_GLASS, active_grant_exists(_ACTOR, _PATIENT, _NOW)),
)


def load_facts(conn: Connection, actor: Actor, patient_id: str | None, now: datetime) -> Facts:
    """What the stores know about ``actor`` and ``patient_id`` at ``now``.

    No patient (an operational resource): empty facts. Only practitioners can be in a care
    team, named, or hold a break-the-glass grant; for other roles those facts stay false.
    """
    if patient_id is None:
        return Facts()
    practitioner = actor.role is Role.PRACTITIONER
    rows = conn.execute(
        _PRACTITIONER_FACTS if practitioner else _FACTS,
        {"patient_id": patient_id, "actor_id": actor.user_id, "now": utc(now)},
    ).all()
    consents = frozenset(Purpose(purpose) for purpose, fact in rows if fact == CONSENT)
    holds = {fact for _purpose, fact in rows}
    return Facts(
        consents=consents,
        in_care_team=CARE_TEAM in holds,
        named_by_patient=NAMED in holds,
        break_glass_active=BREAK_GLASS in holds,
        restricted_processing=RESTRICTED in holds,
    )
