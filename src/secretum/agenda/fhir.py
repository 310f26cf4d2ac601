"""The agenda as FHIR R4 shapes: Schedule, Slot, Appointment, Encounter, and the consultation
note (a Composition).

Each function renders a plain object as a FHIR JSON object and validates it with
``fhir.resources`` (:func:`secretum.records.fhir.check`: an invalid shape is a bug here, never
bad input). The FHIR API routes (same validation, policy, sealing and audit as the other
resources) are built on these by the FHIR layer.

Ids and codes only, no name; the one free text is a consultation's note (its Composition,
sealed in the record, never kept by the agenda). Times are FHIR instants
(UTC, ``Z``); a page shows them in the clinic's zone. A video consultation's Encounter has the
class ``VR`` (virtual, v3 ActCode); an on-site one ``AMB`` (ambulatory).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from secretum.agenda.model import Appointment, Modality, Slot, Status
from secretum.records.fhir import check, instant

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"
#: LOINC 11488-4 "Consult note": the type of a consultation's note (a Composition).
CONSULT_NOTE = {"system": LOINC, "code": "11488-4", "display": "Consult note"}
XHTML = "http://www.w3.org/1999/xhtml"
SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"

_ENCOUNTER_CLASS = {
    Modality.VIDEO: {"system": ACT_CODE, "code": "VR", "display": "virtual"},
    Modality.ON_SITE: {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
}
#: Appointment.status for each of ours (a moved one was cancelled and replaced).
_APPOINTMENT_STATUS = {
    Status.BOOKED: "booked",
    Status.CANCELLED: "cancelled",
    Status.MOVED: "cancelled",
    Status.FULFILLED: "fulfilled",
}
_ENCOUNTER_STATUS = {
    Status.BOOKED: "planned",
    Status.CANCELLED: "cancelled",
    Status.MOVED: "cancelled",
    Status.FULFILLED: "finished",
}


def schedule_id(practitioner_id: str) -> str:
    """One schedule per practitioner: its id is theirs."""
    return practitioner_id


#: Required value sets of ``status`` (fhir.resources checks the syntax of codes, not these).
_STATUS_CODES = {
    "Slot": {"busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"},
    "Appointment": {
        "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
        "entered-in-error", "checked-in", "waitlist",
    },
    "Encounter": {
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
        "entered-in-error", "unknown",
    },
}  # fmt: skip


def _checked(resource: dict[str, Any]) -> dict[str, Any]:
    """Validated (AssertionError: a bug here), required status codes included."""
    check(resource)
    codes = _STATUS_CODES.get(resource["resourceType"])
    if codes is not None and resource["status"] not in codes:
        raise AssertionError(f"{resource['resourceType']}.status: not in its required value set")
    return resource


def schedule(practitioner_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The practitioner's Schedule over the planning horizon ``[start, end]``."""
    return _checked(
        {
            "resourceType": "Schedule",
            "id": schedule_id(practitioner_id),
            "active": True,
            "actor": [{"reference": f"Practitioner/{practitioner_id}"}],
            "planningHorizon": {"start": instant(start), "end": instant(end)},
        }
    )


def slot(value: Slot, *, busy: bool = False) -> dict[str, Any]:
    """A Slot of the practitioner's schedule (``free``, or ``busy`` once booked). Its id is
    derived from the schedule and start, so the same slot keeps the same id."""
    stamp = value.start.strftime("%Y%m%dT%H%M%SZ").lower()
    return _checked(
        {
            "resourceType": "Slot",
            "id": f"{schedule_id(value.practitioner_id)}-{stamp}"[:64],
            "schedule": {"reference": f"Schedule/{schedule_id(value.practitioner_id)}"},
            "status": "busy" if busy else "free",
            "start": instant(value.start),
            "end": instant(value.end),
        }
    )


def appointment(value: Appointment) -> dict[str, Any]:
    """The Appointment: who (patient and practitioner, both accepted), when, its status."""
    minutes = int((value.end - value.start).total_seconds() // 60)
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": value.appointment_id,
        "status": _APPOINTMENT_STATUS[value.status],
        "start": instant(value.start),
        "end": instant(value.end),
        "minutesDuration": minutes,
        "created": value.created_at.date().isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{value.patient_id}"}, "status": "accepted"},
            {
                "actor": {"reference": f"Practitioner/{value.practitioner_id}"},
                "status": "accepted",
            },
        ],
    }
    if value.status is Status.MOVED and value.moved_to:
        resource["cancelationReason"] = {"text": "moved"}
    return _checked(resource)


def encounter(value: Appointment) -> dict[str, Any]:
    """The Encounter of the consultation (class VR for video), planned until it is held."""
    return _checked(
        {
            "resourceType": "Encounter",
            "id": value.appointment_id,
            "status": _ENCOUNTER_STATUS[value.status],
            "class": _ENCOUNTER_CLASS[value.modality],
            "subject": {"reference": f"Patient/{value.patient_id}"},
            "participant": [{"individual": {"reference": f"Practitioner/{value.practitioner_id}"}}],
            "appointment": [{"reference": f"Appointment/{value.appointment_id}"}],
            "period": {"start": instant(value.start), "end": instant(value.end)},
        }
    )


def held_encounter(value: Appointment, now: datetime) -> dict[str, Any]:
    """The Encounter of a consultation that was held (``finished``), as the record keeps it
    when its note is written: same id as the appointment, linked to it, class VR for video;
    its period runs from the appointment's start to its end (or now, if later)."""
    resource = encounter(value)
    resource["status"] = "finished"
    resource["period"] = {"start": instant(value.start), "end": instant(max(value.end, now))}
    return _checked(resource)


def note_text(resource: dict[str, Any]) -> str:
    """The text of a consultation note (:func:`consult_note`), as the practitioner wrote it."""
    section = (resource.get("section") or [{}])[0]
    div = str((section.get("text") or {}).get("div", ""))
    return html.unescape(
        div.removeprefix(f'<div xmlns="{XHTML}"><pre>').removesuffix("</pre></div>")
    )


def consult_note(value: Appointment, text: str, now: datetime) -> dict[str, Any]:
    """The note of a consultation as a Composition (LOINC 11488-4 Consult note) about the
    patient, written by the practitioner, linked to the consultation's Encounter (its time is
    the event's period; ``date`` is when the note was written). The text is
    its one section's narrative (XHTML, escaped: shown as written, never as markup)."""
    return _checked(
        {
            "resourceType": "Composition",
            "status": "final",
            "type": {"coding": [CONSULT_NOTE]},
            "subject": {"reference": f"Patient/{value.patient_id}"},
            "encounter": {"reference": f"Encounter/{value.appointment_id}"},
            "date": instant(now),
            "author": [{"reference": f"Practitioner/{value.practitioner_id}"}],
            "title": "Consult note",
            "event": [{"period": {"start": instant(value.start), "end": instant(value.end)}}],
            "section": [
                {
                    "code": {"coding": [CONSULT_NOTE]},
                    "text": {
                        "status": "generated",
                        "div": f'<div xmlns="{XHTML}"><pre>{html.escape(text)}</pre></div>',
                    },
                }
            ],
        }
    )
