"""Tables of patients' consents (main database): append-only evidence.

A grant is one row of ``consents``; its withdrawal is one row of ``consent_withdrawals``. No row
is ever updated or deleted, so the history of who consented to which text, when, how and from
where stays whole. A new grant after a withdrawal is a new row. Ids and codes only: the text
itself is named by its SHA-256 (:mod:`secretum.consent.texts`).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Integer, LargeBinary, String, Table

from secretum.storage.db import metadata

consents = Table(
    "consents",
    metadata,
    Column("consent_id", String(32), primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    #: secretum.access.model.Purpose (a consented one)
    Column("purpose", String(32), nullable=False),
    #: SHARING: the practitioner the patient named; None for every other purpose
    Column("grantee_id", String(64), nullable=True),
    #: the text the patient saw: hex SHA-256, and (for reading) its version and language
    Column("text_sha256", String(64), nullable=False),
    Column("text_version", Integer, nullable=False),
    Column("language", String(8), nullable=False),
    #: how: secretum.consent.store.ConsentMethod
    Column("method", String(48), nullable=False),
    #: who recorded it (the patient, or a practitioner for a paper form)
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(32), nullable=False),
    Column("source_address", String(45), nullable=True),
    #: e.g. the DocumentReference id of the scanned paper form
    Column("evidence_id", String(64), nullable=True),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    #: tag of the row and of its withdrawal time (secretum.storage.integrity); the one column
    #: ever updated: re-tagged when the consent is withdrawn
    Column("row_mac", LargeBinary(32), nullable=True),
)

consent_withdrawals = Table(
    "consent_withdrawals",
    metadata,
    Column("consent_id", String(32), ForeignKey("consents.consent_id"), primary_key=True),
    Column("method", String(48), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(32), nullable=False),
    Column("source_address", String(45), nullable=True),
    Column("evidence_id", String(64), nullable=True),
    Column("withdrawn_at", DateTime(timezone=True), nullable=False),
)
