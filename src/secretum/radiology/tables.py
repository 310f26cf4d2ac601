"""Tables of the radiology reports (main database). No health data: ids, blind-index values,
versions, times and the SHA-256 of what is being signed.

* ``radiology_reports``: which study a report is about (the blind index of its Study Instance
  UID, as the imaging archive keys it), whose it is, and its last signed version: what the
  worklist needs without opening any record.
* ``radiology_sign_challenges``: a signing ceremony in progress (the challenge is the SHA-256
  of the canonical form of the version to be signed); single use, expiring.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, LargeBinary, String, Table

from secretum.storage.db import metadata

radiology_reports = Table(
    "radiology_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("study_uid_index", LargeBinary(32), nullable=False, index=True),
    Column("author_id", String(64), nullable=False),
    #: the version of the DiagnosticReport last signed (NULL: a draft never signed)
    Column("signed_version", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

radiology_sign_challenges = Table(
    "radiology_sign_challenges",
    metadata,
    Column("challenge_id", String(64), primary_key=True),
    Column("report_id", String(64), nullable=False),
    Column("signer_id", String(64), nullable=False),
    #: the version the signature is made over (the signed one is written as the next)
    Column("base_version", Integer, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("content_sha256", LargeBinary(32), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
