"""Paper consent forms: the date the patient signed and the scanned form that proves it.

A consent recorded by a practitioner "on paper" (:attr:`ConsentMethod.PAPER_SCANNED`) is only
as good as the form behind it. This table keeps, beside the append-only consent row (which
this module never changes), the date written on the signed form and the DocumentReference
that holds the scan (encrypted with the patient's key, through the records context's
document API). The date is what lets the consent service refuse a form signed before the
patient's latest withdrawal (see :meth:`ConsentService.grant`).

One row per paper grant, written in the grant's transaction with ``document_id`` NULL, then
given the document id once, when the scan is stored (:func:`attach_document`): the scan can
only be stored once the consent exists, because storing a document is itself allowed by the
patient's consent. Ids and a date only: no health data.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Date, DateTime, ForeignKey, String, Table, insert, select, update
from sqlalchemy.engine import Connection

from secretum.storage.db import metadata

consent_paper_forms = Table(
    "consent_paper_forms",
    metadata,
    Column("consent_id", String(32), ForeignKey("consents.consent_id"), primary_key=True),
    #: the date written on the signed form (a day: forms carry no time)
    Column("signed_on", Date, nullable=False),
    #: the DocumentReference holding the scanned form (NULL until it is stored)
    Column("document_id", String(64), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)


def record_form(
    conn: Connection,
    consent_id: str,
    signed_on: date,
    now: datetime,
    document_id: str | None = None,
) -> None:
    conn.execute(
        insert(consent_paper_forms).values(
            consent_id=consent_id, signed_on=signed_on, document_id=document_id, recorded_at=now
        )
    )


def attach_document(conn: Connection, consent_id: str, document_id: str) -> bool:
    """Name the scan of a paper grant, once; False if it has one already (or no form row)."""
    result = conn.execute(
        update(consent_paper_forms)
        .where(
            consent_paper_forms.c.consent_id == consent_id,
            consent_paper_forms.c.document_id.is_(None),
        )
        .values(document_id=document_id)
    )
    return result.rowcount == 1


def form_of(conn: Connection, consent_id: str) -> tuple[date, str | None] | None:
    """``(signed_on, document_id)`` of a paper grant, or None."""
    row = conn.execute(
        select(consent_paper_forms.c.signed_on, consent_paper_forms.c.document_id).where(
            consent_paper_forms.c.consent_id == consent_id
        )
    ).first()
    return None if row is None else (row[0], row[1])
