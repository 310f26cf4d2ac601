"""Audit entries as FHIR R4 AuditEvent resources, shaped after IHE Basic Audit Log Patterns.

Mapping of one entry (IHE BALP, FHIR R4 AuditEvent):

* ``type``: the DICOM event id (DCM, e.g. 110110 Patient Record); ``subtype``: the DICOM event
  type code or FHIR restful interaction; ``action``: C/R/U/D/E; ``recorded``; ``outcome``
  (0/4/8/12); ``outcomeDesc``: the reason code of a refusal (``deny.no-consent``), when there
  is one; ``purposeOfEvent``: v3 PurposeOfUse.
* ``agent[0]``: the user who asked (``requestor``: true, type ``humanuser``), identified by
  ``who.identifier`` (system :data:`ACTOR_SYSTEM`), its role (system :data:`ROLE_SYSTEM`) and
  network address (type 2: IP address).
* ``source``: the observer (this server), type 4 "Application Server".
* ``entity``: the patient (``Patient/<id>``, type 1 Person, role 1 Patient), and the resource
  acted on (``<Type>/<id>``, type 2 System Object, role 4 Domain Resource).

The resource ``id`` is ``audit-<seq>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from secretum.audit.model import (
    DCM_SYSTEM,
    EVENT_TYPE_DISPLAY,
    PURPOSE_SYSTEM,
    SUBTYPES,
)

ACTOR_SYSTEM = "urn:secretum:actor"
ROLE_SYSTEM = "urn:secretum:role"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_USER_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"


def to_audit_event(entry: Mapping[str, Any], *, observer: str = "secretum") -> dict[str, Any]:
    """The FHIR R4 AuditEvent (as JSON-ready dict) of one ``audit_entries`` row."""
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": _USER_TYPE, "code": "humanuser", "display": "human user"}]},
        "who": {"identifier": {"system": ACTOR_SYSTEM, "value": entry["actor_id"]}},
        "requestor": True,
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": entry["actor_role"]}]}],
    }
    if entry.get("source_address"):
        agent["network"] = {"address": entry["source_address"], "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{entry['seq']}",
        "type": {
            "system": DCM_SYSTEM,
            "code": entry["event_type"],
            "display": EVENT_TYPE_DISPLAY[entry["event_type"]],
        },
        "action": entry["action"],
        "recorded": entry["recorded"],
        "outcome": str(entry["outcome"]),
        **({"outcomeDesc": entry["outcome_desc"]} if entry.get("outcome_desc") else {}),
        "agent": [agent],
        "source": {
            "observer": {"display": observer},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if entry.get("subtype"):
        system, display = SUBTYPES[entry["subtype"]]
        event["subtype"] = [{"system": system, "code": entry["subtype"], "display": display}]
    if entry.get("purpose"):
        coding = {"system": PURPOSE_SYSTEM, "code": entry["purpose"]}
        event["purposeOfEvent"] = [{"coding": [coding]}]
    entities = []
    if entry.get("patient_id"):
        entities.append(
            {
                "what": {"reference": f"Patient/{entry['patient_id']}"},
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    if entry.get("resource_type") and entry.get("resource_id"):
        entities.append(
            {
                "what": {"reference": f"{entry['resource_type']}/{entry['resource_id']}"},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    if entities:
        event["entity"] = entities
    return event
