"""The agenda's FHIR shapes validate as R4(B) resources, carry ids and codes only, and an invalid
shape is caught (the validation is not a formality)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from secretum.agenda import fhir
from secretum.agenda.model import Appointment, Modality, Slot, Status

START = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def _appointment(
    status: Status = Status.BOOKED, modality: Modality = Modality.VIDEO
) -> Appointment:
    return Appointment(
        appointment_id="a" * 32, practitioner_id="d1", patient_id="p1", start=START,
        end=START + timedelta(minutes=30), modality=modality, status=status,
        purpose="teleconsultation", relationship_id="r" * 32,
        moved_to="b" * 32 if status is Status.MOVED else None,
        created_at=START - timedelta(days=3), updated_at=START - timedelta(days=3),
    )  # fmt: skip


def _valid(resource: dict[str, object]) -> None:
    get_fhir_model_class(str(resource["resourceType"])).model_validate(resource)


def test_schedule_and_slots() -> None:
    schedule = fhir.schedule("d1", START, START + timedelta(days=30))
    _valid(schedule)
    assert schedule["actor"] == [{"reference": "Practitioner/d1"}]
    free = fhir.slot(Slot("d1", START, START + timedelta(minutes=30), Modality.VIDEO))
    busy = fhir.slot(Slot("d1", START, START + timedelta(minutes=30), Modality.VIDEO), busy=True)
    _valid(free)
    assert free["status"] == "free" and busy["status"] == "busy"
    assert free["schedule"] == {"reference": "Schedule/d1"}
    assert free["start"] == "2026-03-30T07:00:00.000000Z" and free["id"] == busy["id"]


@pytest.mark.parametrize("status", list(Status))
def test_appointment_and_encounter(status: Status) -> None:
    appointment = fhir.appointment(_appointment(status))
    encounter = fhir.encounter(_appointment(status))
    _valid(appointment)
    _valid(encounter)
    actors = [p["actor"]["reference"] for p in appointment["participant"]]
    assert actors == ["Patient/p1", "Practitioner/d1"]
    assert appointment["minutesDuration"] == 30
    assert encounter["class"]["code"] == "VR"
    assert encounter["appointment"] == [{"reference": f"Appointment/{'a' * 32}"}]
    assert "teleconsultation" not in repr(appointment) + repr(encounter)  # codes of ours: none
    expected = {"booked": "planned", "fulfilled": "finished"}.get(status.value, "cancelled")
    assert encounter["status"] == expected


def test_on_site_is_ambulatory() -> None:
    assert fhir.encounter(_appointment(modality=Modality.ON_SITE))["class"]["code"] == "AMB"


def test_an_invalid_shape_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fhir._APPOINTMENT_STATUS, Status.BOOKED, "penciled-in")
    with pytest.raises(AssertionError, match="value set"):
        fhir.appointment(_appointment())
    monkeypatch.setitem(fhir._ENCOUNTER_CLASS, Modality.VIDEO, "VR")  # a code, not a Coding
    with pytest.raises(AssertionError):
        fhir.encounter(_appointment())


@given(st.text(min_size=1, max_size=400))
@settings(max_examples=60, deadline=None)
def test_a_consult_note_keeps_its_text_exactly_and_escaped(text: str) -> None:
    note = fhir.consult_note(_appointment(), text, START + timedelta(minutes=40))
    _valid(note)
    div = note["section"][0]["text"]["div"]
    assert "<" not in div.removeprefix(f'<div xmlns="{fhir.XHTML}"><pre>').removesuffix(
        "</pre></div>"
    )  # markup in the text is escaped, never markup in the narrative
    assert fhir.note_text(note) == text
    assert note["encounter"] == {"reference": f"Encounter/{'a' * 32}"}
    assert note["event"][0]["period"]["start"] == fhir.instant(START)


def test_a_held_encounter_is_finished_virtual_and_linked() -> None:
    held = fhir.held_encounter(_appointment(), START + timedelta(minutes=50))
    _valid(held)
    assert held["status"] == "finished" and held["class"]["code"] == "VR"
    assert held["id"] == "a" * 32 and held["appointment"] == [
        {"reference": f"Appointment/{'a' * 32}"}
    ]
    assert held["period"]["end"] == fhir.instant(START + timedelta(minutes=50))  # ran over
