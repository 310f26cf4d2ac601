"""Tables of sealed records and encrypted files (main database).

Only ids, types, versions, times, sensitivity labels and ciphertext are stored: every byte of
patient data is sealed with the patient's data key (:mod:`secretum.crypto.records`), its context
bound as associated data.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, LargeBinary, String, Table

from secretum.storage.db import metadata

sealed_records = Table(
    "sealed_records",
    metadata,
    Column("record_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("record_type", String(64), nullable=False),
    Column("key_id", LargeBinary(16), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

encrypted_files = Table(
    "encrypted_files",
    metadata,
    Column("file_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("file_type", String(64), nullable=False),
    Column("key_id", LargeBinary(16), nullable=False),
    Column("blob_name", String(128), nullable=False),
    Column("plaintext_size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: FHIR resources: one row per resource, pointing at its sealed versions in ``sealed_records``
#: (``record_id`` = ``resource_id``). Ids, type, version, time and the sensitivity label only:
#: the repository scopes every query by ``patient_id`` and ``sensitivity`` without opening a
#: ciphertext. ``patient_id`` is NULL for resources about no patient (Practitioner), which are
#: sealed under a key of their own (owner = the resource id). ``file_version`` is the version of
#: the encrypted file (``encrypted_files``, ``file_id`` = ``resource_id``) of a DocumentReference.
fhir_resources = Table(
    "fhir_resources",
    metadata,
    Column("resource_id", String(64), primary_key=True),
    Column("resource_type", String(64), nullable=False),
    Column("patient_id", String(64), nullable=True),
    Column("version", Integer, nullable=False),
    Column("sensitivity", String(16), nullable=False),
    Column("file_version", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
    Index("ix_fhir_resources_patient_type", "patient_id", "resource_type"),
)

#: Blind index of patients' lookup identifiers (INS, e-mail): HMAC values, never the identifier.
fhir_identifiers = Table(
    "fhir_identifiers",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("blind_value", LargeBinary(32), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Index("ix_fhir_identifiers_patient_id", "patient_id"),
)

#: GDPR erasures waiting for the end of the legal retention period (then crypto-shredding).
scheduled_erasures = Table(
    "scheduled_erasures",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("requested_by", String(64), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False, index=True),
    Column("done_at", DateTime(timezone=True), nullable=True),
)
