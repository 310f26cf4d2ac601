"""A consent as a FHIR R4 Consent resource (JSON-ready dict).

Mapping (FHIR R4 §Consent; elements also valid in R4B):

* ``id`` and ``identifier``: the consent id; ``status``: ``active``, or ``inactive`` once
  withdrawn; ``dateTime``: when it was granted.
* ``scope`` (consentscope): ``treatment`` for teleconsultation, teleradiology and remote
  monitoring, ``patient-privacy`` for sharing with a named practitioner, ``research``.
* ``category``: LOINC 59284-0 "Patient Consent" and the Secretum purpose code.
* ``patient`` and ``performer``: the patient (who agrees, even on a paper form recorded by a
  practitioner).
* ``policy[0].uri``: ``urn:secretum:consent-text:sha256:<hex>``, the exact text the patient saw;
  ``policyRule``: v3 ActCode OPTIN (an explicit opt-in).
* ``sourceReference``: the scanned paper form (``DocumentReference``), when there is one.
* ``provision``: ``permit`` for the period granted → withdrawn, for the v3 PurposeOfUse of the
  purpose; for sharing, the named practitioner as information recipient (v3 IRCP).
* extensions: how it was given (``web-checkbox``, ``paper-scanned-by-practitioner``) and who
  recorded it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from secretum.access.model import AUDIT_PURPOSE, Purpose
from secretum.consent.store import ConsentRecord
from secretum.consent.texts import TEXT_URN_PREFIX

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PURPOSE_SYSTEM = "urn:secretum:consent-purpose"
CONSENT_ID_SYSTEM = "urn:secretum:consent"
METHOD_EXTENSION = "urn:secretum:fhir:StructureDefinition:consent-method"
RECORDER_EXTENSION = "urn:secretum:fhir:StructureDefinition:consent-recorder"

_SCOPES: dict[Purpose, tuple[str, str]] = {
    Purpose.TELECONSULTATION: ("treatment", "Treatment"),
    Purpose.TELERADIOLOGY: ("treatment", "Treatment"),
    Purpose.REMOTE_MONITORING: ("treatment", "Treatment"),
    Purpose.SHARING: ("patient-privacy", "Privacy Consent"),
    Purpose.RESEARCH: ("research", "Research"),
}

_ROLE_TYPES = {"patient": "Patient", "practitioner": "Practitioner"}


def _time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _reference(actor_id: str, role: str) -> dict[str, Any]:
    kind = _ROLE_TYPES.get(role)
    if kind is None:
        return {"identifier": {"system": "urn:secretum:actor", "value": actor_id}}
    return {"reference": f"{kind}/{actor_id}"}


def to_fhir_consent(record: ConsentRecord) -> dict[str, Any]:
    """The FHIR R4 Consent of ``record``, as a JSON-ready dict."""
    scope_code, scope_display = _SCOPES[record.purpose]
    granted = record.granted
    period: dict[str, str] = {"start": _time(granted.at)}
    if record.withdrawn is not None:
        period["end"] = _time(record.withdrawn.at)
    provision: dict[str, Any] = {
        "type": "permit",
        "period": period,
        "purpose": [{"system": ACT_REASON, "code": AUDIT_PURPOSE[record.purpose]}],
    }
    if record.grantee_id is not None:
        provision["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": PARTICIPATION,
                            "code": "IRCP",
                            "display": "information recipient",
                        }
                    ]
                },
                "reference": {"reference": f"Practitioner/{record.grantee_id}"},
            }
        ]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": record.consent_id,
        "extension": [
            {"url": METHOD_EXTENSION, "valueCode": str(granted.method)},
            {
                "url": RECORDER_EXTENSION,
                "valueReference": _reference(granted.actor_id, granted.actor_role),
            },
        ],
        "identifier": [{"system": CONSENT_ID_SYSTEM, "value": record.consent_id}],
        "status": "active" if record.withdrawn is None else "inactive",
        "scope": {
            "coding": [{"system": CONSENT_SCOPE, "code": scope_code, "display": scope_display}]
        },
        "category": [
            {
                "coding": [
                    {"system": LOINC, "code": "59284-0", "display": "Patient Consent"},
                    {"system": PURPOSE_SYSTEM, "code": str(record.purpose)},
                ]
            }
        ],
        "patient": {"reference": f"Patient/{record.patient_id}"},
        "dateTime": _time(granted.at),
        "performer": [{"reference": f"Patient/{record.patient_id}"}],
        "policy": [{"uri": f"{TEXT_URN_PREFIX}{record.text_sha256}"}],
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN", "display": "opt-in"}]},
        "provision": provision,
    }
    if granted.evidence_id is not None:
        resource["sourceReference"] = {"reference": f"DocumentReference/{granted.evidence_id}"}
    return resource
