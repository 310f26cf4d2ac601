"""Audit events: strict fields (no free text), canonical encoding, FHIR R4 AuditEvent shape."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from hypothesis import given
from hypothesis import strategies as st

from secretum.audit.fhir import to_audit_event
from secretum.audit.merkle import hash_leaf
from secretum.audit.model import (
    CANONICAL_FIELDS,
    PURPOSES,
    SUBTYPES,
    AuditEvent,
    EventAction,
    EventType,
    Outcome,
)
from secretum.audit.store import _INSERT_ENTRY, ENTRY_COLUMNS, entry_row

NOW = datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def make(**overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "recorded": NOW,
        "event_type": EventType.PATIENT_RECORD,
        "action": EventAction.READ,
        "actor_id": "u-42",
        "actor_role": "doctor",
        "subtype": "read",
        "resource_type": "Observation",
        "resource_id": "obs-7",
        "patient_id": "p-1",
        "purpose": "TREAT",
        "source_address": "192.0.2.10",
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def test_a_valid_event_keeps_its_codes() -> None:
    event = make()
    assert event.event_type == "110110"
    assert event.action == "R"
    assert event.outcome == 0
    assert event.recorded_text == "2025-03-01T08:30:15.123456Z"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resource_id", "Type 2 diabetes mellitus"),  # a diagnosis, not an id
        ("resource_id", "HbA1c=9.1%"),
        ("patient_id", "Jean Dupont"),
        ("patient_id", "x" * 65),
        ("actor_id", ""),
        ("actor_id", "dr.house@example.org"),
        ("actor_role", "Chief of medicine"),
        ("resource_type", "observation"),
        ("event_type", "110999"),
        ("event_type", "Patient Record"),
        ("subtype", "looked at the chart"),
        ("action", "READ"),
        ("action", "CR"),
        ("purpose", "because the patient asked"),
        ("source_address", "not-an-address"),
        ("source_address", "fe80::1%eth0"),
        ("outcome", 1),
        ("outcome", True),
        ("outcome", "0"),
        ("recorded", datetime(2025, 1, 1)),  # naive
        ("recorded", "2025-01-01T00:00:00Z"),
    ],
)
def test_free_text_and_bad_codes_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"'{field}'|audit time") as info:
        make(**{field: value})
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(info.value)  # the refused value is never echoed


def test_resource_type_and_id_go_together() -> None:
    with pytest.raises(ValueError, match="resource_id"):
        make(resource_type=None)
    event = make(resource_type=None, resource_id=None, patient_id=None, purpose=None)
    assert event.resource_id is None


def test_times_are_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    event = make(recorded=datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=paris))
    assert event.recorded_text == "2025-03-01T08:30:15.123456Z"


def test_ipv6_addresses_are_normalised() -> None:
    assert make(source_address="2001:DB8:0:0:0:0:0:1").source_address == "2001:db8::1"


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,63}", fullmatch=True)
events = st.builds(
    make,
    recorded=st.datetimes(timezones=st.just(UTC)),
    event_type=st.sampled_from(list(EventType)),
    action=st.sampled_from(list(EventAction)),
    outcome=st.sampled_from(list(Outcome)),
    actor_id=ids,
    actor_role=st.from_regex(r"[a-z][a-z0-9_\-]{0,31}", fullmatch=True),
    subtype=st.none() | st.sampled_from(sorted(SUBTYPES)),
    resource_id=ids,
    patient_id=st.none() | ids,
    purpose=st.none() | st.sampled_from(sorted(PURPOSES)),
    source_address=st.none() | st.ip_addresses().map(str),
    outcome_desc=st.none() | st.from_regex(r"[a-z][a-z0-9.\-]{0,63}", fullmatch=True),
)


@given(events, st.integers(0, 2**62))
def test_canonical_entry_is_sorted_compact_json(event: AuditEvent, seq: int) -> None:
    values = dict(zip(CANONICAL_FIELDS, event.values(seq), strict=True))
    del values["outcome_desc"]  # its slot holds the whole member: present only with a code
    if event.outcome_desc is not None:
        values["outcome_desc"] = event.outcome_desc
    expected = json.dumps({**values, "v": 1}, sort_keys=True, separators=(",", ":"))
    assert event.canonical(seq) == expected.encode("utf-8")
    assert json.loads(event.canonical(seq))["seq"] == seq
    assert hash_leaf(event.canonical(seq)) != hash_leaf(event.canonical(seq + 1))


def test_canonical_entry_known_answer() -> None:
    """Pinned: changing the encoding would break every existing log."""
    assert make().canonical(5) == (
        b'{"action":"R","actor_id":"u-42","actor_role":"doctor","event_type":"110110",'
        b'"outcome":0,"patient_id":"p-1","purpose":"TREAT",'
        b'"recorded":"2025-03-01T08:30:15.123456Z","resource_id":"obs-7",'
        b'"resource_type":"Observation","seq":5,"source_address":"192.0.2.10",'
        b'"subtype":"read","v":1}'
    )
    assert make(patient_id=None).canonical(0).count(b'"patient_id":""') == 1


#: SHA-256(0x00 || the pinned entry above), computed with the encoding as it was before
#: ``outcome_desc`` existed: an entry without a reason code must keep this leaf hash.
_LEAF_BEFORE_OUTCOME_DESC = "75c53f7d4695bc066938fbc9d2b819e05bbfc7c6e199975c8d75e5fcf77fc5d9"


def test_an_entry_without_outcome_desc_keeps_its_bytes_and_leaf_hash() -> None:
    """Logs written before the field existed still verify: no member, not even an empty one."""
    event = make()
    assert event.outcome_desc is None and b"outcome_desc" not in event.canonical(5)
    assert hashlib.sha256(event.leaf_input(5)).hexdigest() == _LEAF_BEFORE_OUTCOME_DESC
    assert hash_leaf(event.canonical(5)).hex() == _LEAF_BEFORE_OUTCOME_DESC


def test_outcome_desc_is_hashed_in_its_sorted_place() -> None:
    """A reason code is part of the hashed entry: rewriting it changes the leaf hash."""
    event = make(outcome=Outcome.MINOR_FAILURE, outcome_desc="deny.not-own-record")
    assert event.canonical(5) == (
        b'{"action":"R","actor_id":"u-42","actor_role":"doctor","event_type":"110110",'
        b'"outcome":4,"outcome_desc":"deny.not-own-record","patient_id":"p-1","purpose":"TREAT",'
        b'"recorded":"2025-03-01T08:30:15.123456Z","resource_id":"obs-7",'
        b'"resource_type":"Observation","seq":5,"source_address":"192.0.2.10",'
        b'"subtype":"read","v":1}'
    )
    other = make(outcome=Outcome.MINOR_FAILURE, outcome_desc="deny.no-consent")
    bare = make(outcome=Outcome.MINOR_FAILURE)
    leaves = {hash_leaf(e.canonical(5)) for e in (event, other, bare)}
    assert len(leaves) == 3
    assert event.leaf_input(5) == b"\x00" + event.canonical(5)
    assert event != other  # a reason code is part of the event's identity


@pytest.mark.parametrize(
    "value",
    [
        "access denied to p-1",  # free text
        "Deny.No-Consent",  # upper case
        "deny.no consent",
        "deny.no_consent",
        '","outcome":0,"x":"',  # an injection into the canonical JSON
        "",
        ".deny",
        "d" * 65,
        "déni",
        "deny.x\n",
        5,
        b"deny.x",
    ],
)
def test_outcome_desc_takes_a_code_only(value: Any) -> None:
    with pytest.raises(ValueError, match="outcome_desc") as refused:
        make(outcome_desc=value)
    if isinstance(value, str) and value:
        assert value not in str(refused.value)  # never echoed


def test_fhir_export_carries_outcome_desc() -> None:
    event = make(outcome=Outcome.MINOR_FAILURE, outcome_desc="deny.no-consent")
    resource = to_audit_event(_row(event, 3))
    FhirAuditEvent.model_validate(resource)
    assert resource["outcomeDesc"] == "deny.no-consent" and resource["outcome"] == "4"
    assert "outcomeDesc" not in to_audit_event(_row(make(), 3))


def test_entry_row_matches_insert_columns() -> None:
    columns = _INSERT_ENTRY.split("(", 1)[1].split(")", 1)[0].replace(" ", "").split(",")
    assert tuple(columns) == ENTRY_COLUMNS
    row = dict(zip(ENTRY_COLUMNS, entry_row(9, make(), b"h" * 32), strict=True))
    assert row["seq"] == 9 and row["recorded"] == "2025-03-01T08:30:15.123456Z"
    assert row["patient_id"] == "p-1" and row["leaf_hash"] == b"h" * 32


def _row(event: AuditEvent, seq: int) -> dict[str, Any]:
    return dict(zip(ENTRY_COLUMNS, entry_row(seq, event, b"\0" * 32), strict=True))


def test_fhir_audit_event_follows_balp_and_validates_as_r4() -> None:
    resource = to_audit_event(_row(make(), 3), observer="secretum-test")
    FhirAuditEvent.model_validate(resource)
    assert resource["type"]["code"] == "110110"
    assert resource["subtype"][0]["system"] == "http://hl7.org/fhir/restful-interaction"
    assert resource["action"] == "R" and resource["outcome"] == "0"
    agent = resource["agent"][0]
    assert agent["requestor"] is True and agent["who"]["identifier"]["value"] == "u-42"
    assert agent["network"] == {"address": "192.0.2.10", "type": "2"}
    patient, what = resource["entity"]
    assert patient["what"]["reference"] == "Patient/p-1" and patient["role"]["code"] == "1"
    assert what["what"]["reference"] == "Observation/obs-7"
    assert resource["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert resource["source"]["observer"]["display"] == "secretum-test"


@given(events)
def test_every_event_exports_to_a_valid_r4_audit_event(event: AuditEvent) -> None:
    FhirAuditEvent.model_validate(to_audit_event(_row(event, 0)))


def test_login_without_patient_exports_without_entities() -> None:
    event = make(
        event_type=EventType.USER_AUTHENTICATION,
        action=EventAction.EXECUTE,
        subtype="110122",
        resource_type=None,
        resource_id=None,
        patient_id=None,
        purpose=None,
        outcome=Outcome.MINOR_FAILURE,
    )
    resource = to_audit_event(_row(event, 0))
    FhirAuditEvent.model_validate(resource)
    assert "entity" not in resource and resource["outcome"] == "4"
    assert resource["subtype"][0]["display"] == "Login"
