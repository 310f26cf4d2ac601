"""Key vault tables: a database of their own, apart from the main database.

Why apart: crypto-shredding deletes a patient's wrapped data key. If the wrapped key lived in
the main database, restoring a backup of that database taken before the shredding would bring
the key back and the data with it. The vault is backed up on its own, short retention, and its
deleted pages are zeroed (SQLite ``secure_delete``).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, LargeBinary, String, Table

from secretum.storage.db import vault_metadata

#: One row per patient: the patient's data key, wrapped by a KEK version of the KMS.
data_keys = Table(
    "data_keys",
    vault_metadata,
    Column("owner_id", String(128), primary_key=True),
    Column("key_id", LargeBinary(16), nullable=False, unique=True),
    Column("kek_version", Integer, nullable=False, index=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rewrapped_at", DateTime(timezone=True), nullable=True),
)

#: Secrets of the platform itself (audit signing key, CA key, blind-index key), wrapped.
named_secrets = Table(
    "named_secrets",
    vault_metadata,
    Column("name", String(64), primary_key=True),
    Column("kek_version", Integer, nullable=False, index=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rewrapped_at", DateTime(timezone=True), nullable=True),
)

#: What was shredded: no key material, only that it is gone and when.
tombstones = Table(
    "key_tombstones",
    vault_metadata,
    Column("owner_id", String(128), primary_key=True),
    Column("key_id", LargeBinary(16), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=False),
)
