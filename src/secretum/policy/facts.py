"""Gather the :class:`~secretum.access.model.Facts` of one request from the stores.

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

Every row a fact rests on is authenticated (:mod:`secretum.storage.integrity`): the query
returns the rows themselves with their tags, not just whether one exists, and each tag is
checked here before the row counts. A row whose tag is missing or wrong raises
:class:`~secretum.storage.integrity.RowTampered`: the decision is not taken (the request is
refused, and the records door audits it as tampering). For the restriction of processing, whose
latest change is the one that holds, every change from the one in force onwards is returned and
checked, so that a change pushed into the future (to bring an older one back) is caught too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CompoundSelect,
    DateTime,
    Integer,
    LargeBinary,
    Select,
    String,
    bindparam,
    cast,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from secretum.access.model import Actor, Facts, Purpose, Role
from secretum.consent.store import CONSENT_SPEC, active_purposes_select
from secretum.consent.tables import consent_withdrawals, consents
from secretum.policy.care import CARE_SPEC, NAMED_SPEC, in_care_team_condition, naming_holds
from secretum.policy.grants import GRANT_SPEC, active_grant_condition
from secretum.policy.guests import GUEST_SPEC, guest_condition
from secretum.policy.restriction import RESTRICTION_SPEC, in_force_and_later
from secretum.policy.tables import (
    break_glass_grants,
    call_guests,
    care_relationships,
    from_db,
    processing_restrictions,
    restricted_data_named,
    utc,
)
from secretum.storage.integrity import RowSpec

_PATIENT = bindparam("patient_id", type_=String())
_ACTOR = bindparam("actor_id", type_=String())
_NOW = bindparam("now", type_=DateTime(timezone=True))
_APPOINTMENT = bindparam("appointment_id", type_=String())

#: Names of the rows of the facts query (its first column).
CONSENT, RESTRICTED, CARE_TEAM, NAMED, BREAK_GLASS, CALL_GUEST = (
    "consent",
    "restricted",
    "care-team",
    "named",
    "break-glass",
    "call-guest",
)

#: The columns of every row of the facts query, and their types: each branch fills the slots
#: its table needs with its own columns, the others with a typed NULL (so that both SQLite and
#: PostgreSQL give back the right Python types, whatever the branch).
_SLOTS: dict[str, TypeEngine[Any]] = {
    "rid": String(),
    "s1": String(),
    "s2": String(),
    "s3": String(),
    "s4": String(),
    "n1": Integer(),
    "f1": Boolean(),
    "t1": DateTime(timezone=True),
    "t2": DateTime(timezone=True),
    "t3": DateTime(timezone=True),
    "b1": LargeBinary(),
    "mac": LargeBinary(),
}

#: For each fact: its spec, and which slot holds which column of the row it names.
_LAYOUT: dict[str, tuple[RowSpec, dict[str, str]]] = {
    CONSENT: (
        CONSENT_SPEC,
        {
            "consent_id": "rid",
            "patient_id": "s1",
            "grantee_id": "s2",
            "purpose": "s3",
            "text_sha256": "s4",
            "text_version": "n1",
            "granted_at": "t1",
            "withdrawn_at": "t2",
        },
    ),
    RESTRICTED: (
        RESTRICTION_SPEC,
        {"patient_id": "s1", "actor_id": "s2", "seq": "n1", "restricted": "f1", "set_at": "t1"},
    ),
    CARE_TEAM: (
        CARE_SPEC,
        {
            "relationship_id": "rid",
            "patient_id": "s1",
            "practitioner_id": "s2",
            "basis": "s3",
            "source_id": "s4",
            "started_at": "t1",
            "ends_at": "t2",
            "ended_at": "t3",
        },
    ),
    NAMED: (
        NAMED_SPEC,
        {
            "naming_id": "rid",
            "patient_id": "s1",
            "practitioner_id": "s2",
            "named_at": "t1",
            "revoked_at": "t2",
        },
    ),
    BREAK_GLASS: (
        GRANT_SPEC,
        {
            "grant_id": "rid",
            "patient_id": "s1",
            "practitioner_id": "s2",
            "key_id": "b1",
            "granted_at": "t1",
            "expires_at": "t2",
            "closed_at": "t3",
        },
    ),
    CALL_GUEST: (
        GUEST_SPEC,
        {
            "guest_id": "rid",
            "patient_id": "s1",
            "practitioner_id": "s2",
            "appointment_id": "s3",
            "accepted_at": "t1",
            "withdrawn_at": "t2",
        },
    ),
}


def _rows_of(
    name: str, base: Select[Any], columns: Mapping[str, ColumnElement[Any]]
) -> Select[Any]:
    """``base`` (its FROM and WHERE) selecting the rows of fact ``name`` in the slots."""
    _spec, layout = _LAYOUT[name]
    by_slot = {layout.get(column, column): expr for column, expr in columns.items()}
    slots = [
        by_slot[slot].label(slot) if slot in by_slot else cast(null(), kind).label(slot)
        for slot, kind in _SLOTS.items()
    ]
    return base.with_only_columns(literal_column(f"'{name}'", String()).label("fact"), *slots)


def _columns(table: Any, *names: str) -> dict[str, ColumnElement[Any]]:
    return {name: table.c[name] for name in names}


_c, _w = consents.c, consent_withdrawals.c
_CONSENTS = _rows_of(
    CONSENT,
    active_purposes_select(_PATIENT, _NOW, _ACTOR),
    {
        **_columns(consents, "consent_id", "patient_id", "grantee_id", "purpose"),
        **_columns(consents, "text_sha256", "text_version", "granted_at"),
        "withdrawn_at": _w.withdrawn_at,
        "mac": _c.row_mac,
    },
)
_r = processing_restrictions.c
_RESTRICTED = _rows_of(
    RESTRICTED,
    select(_r.seq).where(in_force_and_later(_PATIENT, _NOW)),
    {
        **_columns(processing_restrictions, "patient_id", "actor_id", "seq", "restricted"),
        "set_at": _r.set_at,
        "mac": _r.row_mac,
    },
)


def _matching(name: str, table: Any, condition: ColumnElement[bool]) -> Select[Any]:
    """The rows of ``table`` that satisfy ``condition`` (the fact holds), with their tags."""
    _spec, layout = _LAYOUT[name]
    columns = _columns(table, *layout)
    columns["mac"] = table.c.row_mac
    return _rows_of(name, select(table).where(condition), columns)


#: Any role: the consents and the restriction.
_FACTS: CompoundSelect[Any] = union_all(_CONSENTS, _RESTRICTED)
#: A practitioner: also the care team, the naming for restricted data, break-the-glass.
_PRACTITIONER_FACTS: CompoundSelect[Any] = union_all(
    _CONSENTS,
    _RESTRICTED,
    _matching(CARE_TEAM, care_relationships, in_care_team_condition(_ACTOR, _PATIENT, _NOW)),
    _matching(NAMED, restricted_data_named, naming_holds(_PATIENT, _ACTOR, _NOW)),
    _matching(BREAK_GLASS, break_glass_grants, active_grant_condition(_ACTOR, _PATIENT, _NOW)),
    _matching(CALL_GUEST, call_guests, guest_condition(_ACTOR, _PATIENT, _APPOINTMENT, _NOW)),
)


def _checked(conn: Connection, fact: str, row: Mapping[Any, Any]) -> Mapping[str, Any]:
    """The table row named by one row of the facts query, its tag checked (RowTampered)."""
    spec, layout = _LAYOUT[fact]
    values = {column: row[slot] for column, slot in layout.items()}
    spec.check(conn, values, row["mac"])
    return values


def load_facts(
    conn: Connection,
    actor: Actor,
    patient_id: str | None,
    now: datetime,
    *,
    appointment_id: str | None = None,
) -> Facts:
    """What the stores know about ``actor`` and ``patient_id`` at ``now`` (and, for a request
    about an appointment, whether the patient accepted the actor into its call).

    No patient (an operational resource): empty facts. Only practitioners (and imaging nodes,
    through a referral) can be in a care team, named, or hold a break-the-glass grant; for
    other roles those facts stay false (no rule lets a node use a naming or a grant).
    Every row is authenticated first: RowTampered if one is not.
    """
    if patient_id is None:
        return Facts()
    # An imaging node is in a care team through a referral to it, like a practitioner.
    practitioner = actor.role in (Role.PRACTITIONER, Role.IMAGING_NODE)
    now = utc(now)
    rows = conn.execute(
        _PRACTITIONER_FACTS if practitioner else _FACTS,
        {
            "patient_id": patient_id,
            "actor_id": actor.user_id,
            "now": now,
            "appointment_id": appointment_id,
        },
    ).mappings()
    consents_: set[Purpose] = set()
    holds: set[str] = set()
    restriction: tuple[int, bool] | None = None
    for row in rows:
        fact = row["fact"]
        values = _checked(conn, fact, row)
        if fact == CONSENT:
            consents_.add(Purpose(values["purpose"]))
        elif fact == RESTRICTED:
            set_at = from_db(values["set_at"])
            if (
                set_at is not None
                and set_at <= now
                and (restriction is None or values["seq"] > restriction[0])
            ):
                restriction = (values["seq"], bool(values["restricted"]))
        else:
            holds.add(fact)
    return Facts(
        consents=frozenset(consents_),
        in_care_team=CARE_TEAM in holds,
        named_by_patient=NAMED in holds,
        break_glass_active=BREAK_GLASS in holds,
        restricted_processing=restriction is not None and restriction[1],
        call_guest=CALL_GUEST in holds,
    )
