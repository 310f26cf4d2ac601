"""The vocabulary of the imaging archive, and the choices behind what it stores in clear.

What is matched, and how
------------------------
* **UIDs** (Study, Series, SOP Instance) are blind-indexed (HMAC-SHA256 under the platform's
  blind-index key, one kind each), never stored. A UID is meant to be an opaque number, but
  many devices build it from a root naming the site or the scanner, a date, a serial number,
  sometimes the accession number or the patient id; and a UID is the very thing that links
  this copy to the copies in the sending hospital's PACS. DICOMweb only ever looks UIDs up by
  exact match, which a blind index serves with one indexed equality. The UIDs themselves are
  kept in the sealed attributes (to answer queries) and bound to every ciphertext.
* **PatientID + IssuerOfPatientID** are matched by a blind index of the pair
  (:data:`PATIENT_ID_KIND`) registered for a patient (``imaging_patient_ids``), or, when the
  issuer is one of the INS OIDs, by the patient's INS already indexed by the FHIR repository.
  Exactly one holder matches; none or several send the study to reconciliation.
* **StudyDate** is *not* indexed. A date is weakly identifying (with a birth date or a
  postcode it narrows a population fast), and an exact-date blind index would still leak which
  studies share a day, while ranges (what QIDO mostly asks: ``20260101-20260131``) need an
  order-revealing scheme, which leaks more. Every query is scoped to one patient before any
  date matters (the policy refuses health data without a patient), and a patient has tens of
  studies, not millions: the date (and accession number, description...) is compared after
  unsealing the candidates' attributes. Costs microseconds per study; leaks nothing.
* **Modality**, SOP class, transfer syntax, frame count, sizes and the sensitivity label are in
  clear: they identify no one, and the archive needs them without a key.
* Everything else a query returns (PatientName, BirthDate, AccessionNumber, descriptions,
  referring physician...) is sealed with the owner's record key, its context (kind, key,
  owner, version) bound as associated data.

Who owns the key
----------------
A study's *owner* is its patient, or while it matches no patient, a holding owner of its own
(:data:`HOLDING_PREFIX` + the study key): a data key in the key ring that no clinician's
request can reach (the policy refuses every read of health data without a patient). Linking by
hand re-encrypts every blob and re-seals every attribute under the patient's key, then shreds
the holding key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from secretum.records.fhir import ResourceNotFound

#: Blind-index kinds (domain separation: a UID and a patient id never share a value).
STUDY_UID_KIND = "dicom-study-uid"
SERIES_UID_KIND = "dicom-series-uid"
SOP_UID_KIND = "dicom-sop-uid"
PATIENT_ID_KIND = "dicom-patient-id"
DIGEST_KIND = "dicom-content"

#: Owner id of the key of a study that matched no patient (followed by the study key).
HOLDING_PREFIX = "imaging-holding-"

#: The FHIR resource kind the policy and the audit see for studies, series and instances.
STUDY_KIND = "ImagingStudy"

#: Record types of the sealed values (part of their context, hence of their associated data).
SEALED_STUDY = "ImagingStudy"
SEALED_SERIES = "ImagingSeries"
SEALED_LAYOUT = "ImagingLayout"
SEALED_META = "ImagingMeta"

#: Study-level attributes kept (sealed) for queries and the reconciliation list.
STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
)
#: Series-level attributes kept (sealed).
SERIES_KEYWORDS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
)

#: DIMSE / DICOMweb status of a store refused by the policy (PS3.7 C.5.x "Refused: Not
#: Authorized", also used as the Failure Reason of a STOW-RS response).
NOT_AUTHORIZED = 0x0124


class StudyNotFound(ResourceNotFound):
    """No such study, series or instance, or one the actor may not know of (404)."""


class InstanceStatus(enum.StrEnum):
    STORED = "stored"
    #: the same SOP Instance UID with the same content: nothing stored, success (idempotent)
    DUPLICATE = "duplicate"
    #: the same SOP Instance UID with other content: refused, the stored one is kept
    CONFLICT = "conflict"
    #: refused (invalid instance, not authorised, processing failure)
    FAILED = "failed"


@dataclass(frozen=True)
class InstanceResult:
    """What happened to the ``index``-th instance of an ingest request."""

    index: int
    status: InstanceStatus
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    #: a :class:`~secretum.imaging.part10.Reason` value or ``not_authorized``
    reason: str | None = None
    #: DICOMweb Failure Reason (0008,1197) / DIMSE status, for a failure or conflict
    dicomweb_failure_reason: int | None = None
    dimse_status: int | None = None
    #: the instance's study and series (set when it is stored or already was)
    study_uid: str | None = None
    series_uid: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (InstanceStatus.STORED, InstanceStatus.DUPLICATE)


@dataclass(frozen=True)
class StudyMatch:
    """A study in a query answer: its study-level attributes (DICOM JSON) and counts."""

    study_uid: str
    patient_id: str | None
    attributes: dict[str, Any]
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


@dataclass(frozen=True)
class SeriesMatch:
    study_uid: str
    series_uid: str
    modality: str | None
    attributes: dict[str, Any]
    instance_count: int


@dataclass(frozen=True)
class InstanceMatch:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    number_of_frames: int
    size: int


@dataclass(frozen=True)
class PendingStudy:
    """An entry of the reconciliation list (identity-vigilance staff only)."""

    study_key: str
    reason: str
    attributes: dict[str, Any]
    instance_count: int
    received_at: Any


@dataclass
class StudyQuery:
    """QIDO-style filters; every one is optional and compared on the unsealed attributes,
    except ``study_uid`` (blind index) and ``modality`` (clear)."""

    study_uid: str | None = None
    modality: str | None = None
    #: inclusive ``YYYYMMDD`` bounds (a DICOM date range ``from-to``)
    date_from: str | None = None
    date_to: str | None = None
    accession_number: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
