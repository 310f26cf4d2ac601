"""What the radiology use cases return (plain objects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from secretum.radiology.signing import SignatureCheck
from secretum.records.fhir import FhirRecord


@dataclass(frozen=True)
class WorkItem:
    """A study referred to the radiologist and not yet reported (attributes: DICOM JSON)."""

    study_uid: str
    patient_id: str
    attributes: dict[str, Any]
    modalities: tuple[str, ...]
    number_of_instances: int
    draft_id: str | None


@dataclass(frozen=True)
class ReportVerification:
    report_id: str
    version: int
    signed: bool
    check: SignatureCheck | None
    signer_id: str | None
    signed_at: str | None

    @property
    def valid(self) -> bool:
        return self.check is not None and self.check.valid


@dataclass(frozen=True)
class SignedReport:
    """A signed version of a report as a patient or a clinician sees it."""

    record: FhirRecord
    verification: ReportVerification
