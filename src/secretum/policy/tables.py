"""Tables of the facts the policy reads (main database): care relationships, practitioners named
for restricted data, break-the-glass grants and their reviews, restrictions of processing.

Ids, codes and times only; the one free text (a break-the-glass reason) is sealed with the
patient's data key. Rows are never deleted: an ending or a revocation fills a time column once,
a review or a restriction change adds a row, so the history stays readable.

Times are stored in UTC (:func:`utc`) so that comparisons hold on SQLite, which keeps no zone.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
)

from secretum.storage.db import metadata
from secretum.storage.times import from_db, utc

__all__ = ["from_db", "utc"]  # re-exported: the policy's stores read them from here


care_relationships = Table(
    "care_relationships",
    metadata,
    Column("relationship_id", String(32), primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("practitioner_id", String(64), nullable=False, index=True),
    #: appointment | referral | invitation (secretum.policy.care.CareBasis)
    Column("basis", String(16), nullable=False),
    #: the appointment or referral that opened it, if any
    Column("source_id", String(64), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    #: planned end (e.g. some days after the appointment); None: open-ended
    Column("ends_at", DateTime(timezone=True), nullable=True),
    #: ended early by someone (``end``)
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("ended_by", String(64), nullable=True),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
)

restricted_data_named = Table(
    "restricted_data_named",
    metadata,
    Column("naming_id", String(32), primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("practitioner_id", String(64), nullable=False),
    Column("named_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
)

break_glass_grants = Table(
    "break_glass_grants",
    metadata,
    Column("grant_id", String(32), primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("practitioner_id", String(64), nullable=False, index=True),
    #: the written reason, sealed with the patient's data key (it may hold health data)
    Column("key_id", LargeBinary(16), nullable=False),
    Column("reason_sealed", LargeBinary, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    #: stopped early, or closed by the periodic duty after expiry (audited 110138)
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closed_by", String(64), nullable=True),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
)

break_glass_reviews = Table(
    "break_glass_reviews",
    metadata,
    Column(
        "grant_id",
        String(32),
        ForeignKey("break_glass_grants.grant_id"),
        primary_key=True,
    ),
    Column("reviewer_id", String(64), nullable=False),
    #: secretum.policy.breakglass.ReviewOutcome
    Column("outcome", String(32), nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
)

#: A person the patient accepted into the video call of one of their appointments (a second
#: practitioner, an interpreter): they may join that call, and only it, until withdrawn.
call_guests = Table(
    "call_guests",
    metadata,
    Column("guest_id", String(32), primary_key=True),
    Column("appointment_id", String(32), nullable=False, index=True),
    Column("patient_id", String(64), nullable=False),
    #: the accepted person (a practitioner account of the staff directory)
    Column("practitioner_id", String(64), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
)

processing_restrictions = Table(
    "processing_restrictions",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    #: 1, 2, 3 ... per patient: the highest is the current state
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("restricted", Boolean, nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
)
