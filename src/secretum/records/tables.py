"""Tables of sealed records and encrypted files (main database).

Only ids, types, versions and ciphertext are stored: every byte of patient data is sealed with
the patient's data key (:mod:`secretum.crypto.records`), its context bound as associated data.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, String, Table

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
