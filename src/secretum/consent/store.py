"""The consent repository: append-only rows, read as of a given ``now``.

Primitives run in the caller's transaction; :class:`secretum.consent.service.ConsentService`
decides, audits and notifies around them. Nothing is cached: a withdrawal is seen by the very
next query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Select, String, and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from secretum.access.model import Purpose
from secretum.consent.tables import consent_withdrawals, consents
from secretum.storage.integrity import RowSpec
from secretum.storage.times import from_db, utc

#: What the tag of a consent covers (see :mod:`secretum.storage.integrity`): who consents to
#: what, for whom, to which text, since when, *and when it was withdrawn* (None while it holds).
#: The withdrawal lives in a row of its own; deleting it (or moving its time) would bring the
#: consent back, so the grant's row is re-tagged with the withdrawal time when it is withdrawn
#: (:func:`insert_withdrawal`; the tag is the one column of ``consents`` ever updated) and
#: the tag is checked against the withdrawal joined to it.
CONSENT_SPEC = RowSpec(
    "consents",
    ("consent_id",),
    (
        "patient_id",
        "purpose",
        "grantee_id",
        "text_sha256",
        "text_version",
        "granted_at",
        "withdrawn_at",
    ),
)


class ConsentMethod(StrEnum):
    """How a consent (or its withdrawal) was given."""

    #: the patient ticked a box in their own session
    WEB_CHECKBOX = "web-checkbox"
    #: the patient signed a paper form, scanned and recorded by a practitioner
    PAPER_SCANNED = "paper-scanned-by-practitioner"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Who recorded a grant or a withdrawal, when, how and from where."""

    method: ConsentMethod
    actor_id: str
    actor_role: str
    at: datetime
    source_address: str | None = None
    #: e.g. the scanned paper form (DocumentReference id)
    evidence_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One consent: its grant and, once withdrawn, its withdrawal."""

    consent_id: str
    patient_id: str
    purpose: Purpose
    grantee_id: str | None
    text_sha256: str
    text_version: int
    language: str
    granted: Evidence
    withdrawn: Evidence | None = None

    def active(self, now: datetime) -> bool:
        """Granted at or before ``now`` and not withdrawn by then."""
        now = utc(now)
        return self.granted.at <= now and (self.withdrawn is None or self.withdrawn.at > now)


class NoActiveConsent(LookupError):
    """There is no active consent to withdraw."""


def insert_grant(
    conn: Connection,
    *,
    consent_id: str,
    patient_id: str,
    purpose: Purpose,
    grantee_id: str | None,
    text_sha256: str,
    text_version: int,
    language: str,
    evidence: Evidence,
) -> None:
    """Record a grant under the new id ``consent_id``."""
    tagged = dict(
        consent_id=consent_id,
        patient_id=patient_id,
        purpose=str(purpose),
        grantee_id=grantee_id,
        text_sha256=text_sha256,
        text_version=text_version,
        granted_at=utc(evidence.at),
    )
    conn.execute(
        insert(consents).values(
            language=language,
            method=str(evidence.method),
            actor_id=evidence.actor_id,
            actor_role=evidence.actor_role,
            source_address=evidence.source_address,
            evidence_id=evidence.evidence_id,
            row_mac=CONSENT_SPEC.tag(conn, {**tagged, "withdrawn_at": None}),
            **tagged,
        )
    )


def insert_withdrawal(conn: Connection, consent_id: str, evidence: Evidence) -> None:
    """Record the withdrawal of ``consent_id`` (once: a second one is an integrity error).

    The grant's row is re-tagged with the withdrawal time, its tag checked first (RowTampered:
    a tampered grant is never laundered by a new tag)."""
    grant = (
        conn.execute(select(consents).where(consents.c.consent_id == consent_id).with_for_update())
        .mappings()
        .first()
    )
    if grant is None:
        raise NoActiveConsent("no such consent")
    CONSENT_SPEC.check(conn, {**grant, "withdrawn_at": None})
    withdrawn_at = utc(evidence.at)
    conn.execute(
        update(consents)
        .where(consents.c.consent_id == consent_id)
        .values(row_mac=CONSENT_SPEC.tag(conn, {**grant, "withdrawn_at": withdrawn_at}))
    )
    conn.execute(
        insert(consent_withdrawals).values(
            consent_id=consent_id,
            method=str(evidence.method),
            actor_id=evidence.actor_id,
            actor_role=evidence.actor_role,
            source_address=evidence.source_address,
            evidence_id=evidence.evidence_id,
            withdrawn_at=withdrawn_at,
        )
    )


_JOINED = consents.outerjoin(
    consent_withdrawals, consent_withdrawals.c.consent_id == consents.c.consent_id
)
_COLUMNS = (
    consents,
    consent_withdrawals.c.method.label("w_method"),
    consent_withdrawals.c.actor_id.label("w_actor_id"),
    consent_withdrawals.c.actor_role.label("w_actor_role"),
    consent_withdrawals.c.source_address.label("w_source_address"),
    consent_withdrawals.c.evidence_id.label("w_evidence_id"),
    consent_withdrawals.c.withdrawn_at,
)


def _record(conn: Connection, row: RowMapping) -> ConsentRecord:
    """A consent and its withdrawal, the grant's tag checked (RowTampered if it fails)."""
    CONSENT_SPEC.check(conn, row)
    withdrawn = None
    if row["withdrawn_at"] is not None:
        withdrawn = Evidence(
            ConsentMethod(row["w_method"]),
            row["w_actor_id"],
            row["w_actor_role"],
            from_db(row["withdrawn_at"]) or row["withdrawn_at"],
            row["w_source_address"],
            row["w_evidence_id"],
        )
    return ConsentRecord(
        consent_id=row["consent_id"],
        patient_id=row["patient_id"],
        purpose=Purpose(row["purpose"]),
        grantee_id=row["grantee_id"],
        text_sha256=row["text_sha256"],
        text_version=row["text_version"],
        language=row["language"],
        granted=Evidence(
            ConsentMethod(row["method"]),
            row["actor_id"],
            row["actor_role"],
            from_db(row["granted_at"]) or row["granted_at"],
            row["source_address"],
            row["evidence_id"],
        ),
        withdrawn=withdrawn,
    )


def get(conn: Connection, consent_id: str) -> ConsentRecord | None:
    """One consent with its withdrawal, if any."""
    row = (
        conn.execute(
            select(*_COLUMNS).select_from(_JOINED).where(consents.c.consent_id == consent_id)
        )
        .mappings()
        .first()
    )
    return None if row is None else _record(conn, row)


def history(conn: Connection, patient_id: str) -> list[ConsentRecord]:
    """Every consent of ``patient_id``, withdrawn ones included, oldest first."""
    rows = conn.execute(
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(consents.c.patient_id == patient_id)
        .order_by(consents.c.granted_at, consents.c.consent_id)
    ).mappings()
    return [_record(conn, r) for r in rows]


def active_consents(
    conn: Connection,
    patient_id: str,
    now: datetime,
    *,
    purpose: Purpose | None = None,
    grantee_id: str | None = None,
) -> list[ConsentRecord]:
    """The consents of ``patient_id`` active at ``now`` (optionally of one purpose, and for
    SHARING of one grantee)."""
    now = utc(now)
    query = (
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(
            consents.c.patient_id == patient_id,
            consents.c.granted_at <= now,
            or_(
                consent_withdrawals.c.withdrawn_at.is_(None),
                consent_withdrawals.c.withdrawn_at > now,
            ),
        )
        .order_by(consents.c.granted_at, consents.c.consent_id)
    )
    if purpose is not None:
        query = query.where(consents.c.purpose == str(purpose))
    if grantee_id is not None:
        query = query.where(consents.c.grantee_id == grantee_id)
    return [_record(conn, r) for r in conn.execute(query).mappings()]


def active_purposes_select(
    patient_id: ColumnElement[Any], now: ColumnElement[Any], for_actor: ColumnElement[Any]
) -> Select[str]:
    """The SELECT of the purposes ``patient_id`` consents to at ``now`` as seen by ``for_actor``
    (see :func:`active_purposes`), its arguments SQL expressions (bind parameters): for
    statements built once, and for :func:`secretum.policy.facts.load_facts` to compose."""
    return (
        select(consents.c.purpose)
        .select_from(_JOINED)
        .where(
            consents.c.patient_id == patient_id,
            consents.c.granted_at <= now,
            or_(
                consent_withdrawals.c.withdrawn_at.is_(None),
                consent_withdrawals.c.withdrawn_at > now,
            ),
            or_(
                consents.c.purpose != str(Purpose.SHARING),
                and_(
                    consents.c.purpose == str(Purpose.SHARING),
                    consents.c.grantee_id == for_actor,
                ),
            ),
        )
    )


_ACTIVE_PURPOSES = active_purposes_select(
    bindparam("patient_id", type_=String()),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("for_actor", type_=String()),
).distinct()


def active_purposes(
    conn: Connection, patient_id: str, now: datetime, *, for_actor: str
) -> frozenset[Purpose]:
    """The purposes ``patient_id`` consents to at ``now``, as seen by ``for_actor``: SHARING
    counts only when the patient named ``for_actor`` in it."""
    params = {"patient_id": patient_id, "now": utc(now), "for_actor": for_actor}
    rows = conn.execute(_ACTIVE_PURPOSES, params).scalars()
    return frozenset(Purpose(p) for p in rows)
