"""Tables of the imaging archive (main database): studies, series, instances, DICOM patient ids.

What is stored in clear is what a query must match and cannot identify anyone: internal keys,
modality, SOP class, transfer syntax, frame counts, sizes, times, the sensitivity label. Every
UID and every identifying attribute is either a blind-index value (HMAC under the platform's
blind-index key: found by exact match, never stored) or sealed with the key of the study's
owner (the patient, or the study's holding key while it matches no patient). See
:mod:`secretum.imaging.archive_model` for the choices and their trade-offs.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
)

from secretum.storage.db import metadata

#: One row per study. ``patient_id`` is NULL while the study matches no patient: it is then
#: sealed under ``holding_owner``'s key (a DEK of its own in the key ring), and nobody but
#: identity-vigilance staff may see it. The row's tag covers the study <-> patient link.
imaging_studies = Table(
    "imaging_studies",
    metadata,
    Column("study_key", String(32), primary_key=True),
    Column("study_uid_index", LargeBinary(32), nullable=False, unique=True),
    Column("patient_id", String(64), nullable=True, index=True),
    Column("holding_owner", String(64), nullable=True),
    Column("sensitivity", String(16), nullable=False),
    #: version of the sealed attributes and of every ciphertext of the study (bumped on link)
    Column("version", Integer, nullable=False),
    #: study-level attributes (DICOM JSON), sealed with the owner's record key
    Column("sealed", LargeBinary, nullable=False),
    #: why it waits for reconciliation (``no-match``, ``ambiguous``, ``sender``), else NULL
    Column("unmatched_reason", String(16), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("row_mac", LargeBinary(32), nullable=True),
)

imaging_series = Table(
    "imaging_series",
    metadata,
    Column("series_key", String(32), primary_key=True),
    Column("series_uid_index", LargeBinary(32), nullable=False, unique=True),
    Column("study_key", String(32), nullable=False, index=True),
    Column("modality", String(16), nullable=True),
    Column("version", Integer, nullable=False),
    #: series-level attributes (DICOM JSON), sealed
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: One row per stored instance: its blob (streaming AEAD under the owner's file key), the
#: sealed layout (UIDs, size, where the header and each frame lie in the plaintext) and the
#: sealed metadata (DICOM JSON without bulk data: series metadata never opens a blob).
imaging_instances = Table(
    "imaging_instances",
    metadata,
    Column("instance_key", String(32), primary_key=True),
    Column("sop_uid_index", LargeBinary(32), nullable=False, unique=True),
    Column("series_key", String(32), nullable=False, index=True),
    Column("study_key", String(32), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("number_of_frames", Integer, nullable=False),
    Column("plaintext_size", BigInteger, nullable=False),
    #: blind index of the content digest (resend detection without a plain hash of the file)
    Column("digest_index", LargeBinary(32), nullable=False),
    Column("blob_name", String(128), nullable=False),
    Column("key_id", LargeBinary(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("layout", LargeBinary, nullable=False),
    Column("meta", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_imaging_instances_series_number", "series_key", "instance_number"),
)

#: The DICOM (IssuerOfPatientID, PatientID) pairs registered for a patient, as blind-index
#: values: the key of automatic matching. Tagged: a forged row would route a stranger's images
#: into this patient's record.
imaging_patient_ids = Table(
    "imaging_patient_ids",
    metadata,
    Column("blind_value", LargeBinary(32), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("row_mac", LargeBinary(32), nullable=True),
    Index("ix_imaging_patient_ids_patient_id", "patient_id"),
)

#: The registered imaging nodes (``secretum.imaging.nodes``): AE title and certificate
#: fingerprint each bound to one node, its scopes (``store,query,retrieve``, sorted), where it
#: listens (a C-MOVE destination). Tagged: a node forged or re-scoped by hand is refused.
imaging_nodes = Table(
    "imaging_nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("ae_title", String(16), nullable=False, unique=True),
    Column("cert_sha256", LargeBinary(32), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),
    Column("host", String(255), nullable=True),
    Column("port", Integer, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("row_mac", LargeBinary(32), nullable=True),
)
