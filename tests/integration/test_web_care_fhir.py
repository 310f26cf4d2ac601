"""The FHIR JSON API: create, read, vread, history, update with If-Match, search, $everything,
$content; errors as OperationOutcomes with the right status, never echoing the input, and a
refused request changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from sqlalchemy import text

from web_world import PDF, WebWorld, clinic, observation

FHIR = "application/fhir+json"
ECHO = "echo-marker-3b7f"


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return clinic(tmp_path)


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert ECHO not in response.text
    return body["issue"][0]  # type: ignore[no-any-return]


def state(world: WebWorld) -> tuple[int, int, int]:
    with world.platform.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("fhir_resources", "sealed_records", "encrypted_files")
        )


def test_create_read_vread_update_history_search(world: WebWorld) -> None:
    gp = world.client("gp")
    pid = world.users["own"].user_id
    created = gp.post("/fhir/Observation", json=observation(pid, "api-value"))
    assert created.status_code == 201 and created.headers["content-type"].startswith(FHIR)
    body = created.json()
    Observation.model_validate(body)
    rid = body["id"]
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["location"].endswith(f"/fhir/Observation/{rid}/_history/1")
    read = gp.get(f"/fhir/Observation/{rid}")
    assert read.status_code == 200 and read.json()["code"]["text"] == "api-value"
    changed = {**observation(pid, "api-value-2"), "id": rid}
    assert outcome(gp.put(f"/fhir/Observation/{rid}", json=changed), 428)["code"] == "required"
    updated = gp.put(f"/fhir/Observation/{rid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    stale = gp.put(f"/fhir/Observation/{rid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert outcome(stale, 412)["code"] == "conflict"
    v1 = gp.get(f"/fhir/Observation/{rid}/_history/1")
    assert v1.status_code == 200 and v1.json()["code"]["text"] == "api-value"
    assert outcome(gp.get(f"/fhir/Observation/{rid}/_history/9"), 404)["code"] == "not-found"
    history = gp.get(f"/fhir/Observation/{rid}/_history").json()
    assert history["type"] == "history" and len(history["entry"]) == 2
    search = gp.get("/fhir/Observation", params={"patient": f"Patient/{pid}"}).json()
    assert search["resourceType"] == "Bundle" and search["total"] == 2
    everything = gp.get(f"/fhir/Patient/{pid}/$everything").json()
    kinds = {e["resource"]["resourceType"] for e in everything["entry"]}
    assert {"Patient", "Observation", "DocumentReference"} <= kinds
    content = gp.get(f"/fhir/DocumentReference/{world.ids['doc:own']}/$content")
    assert content.status_code == 200 and content.content == PDF
    assert content.headers["content-type"] == "application/pdf"
    mine = world.client("own").get("/fhir/Observation", params={"patient": pid})
    assert mine.status_code == 200 and mine.json()["total"] == 2


def test_invalid_fhir_is_refused_without_echo_and_changes_nothing(world: WebWorld) -> None:
    gp = world.client("gp")
    pid = world.users["own"].user_id
    before = state(world)
    bad_status = {**observation(pid, ECHO), "status": ECHO}
    assert outcome(gp.post("/fhir/Observation", json=bad_status), 400)["code"] == "code-invalid"
    unknown = {**observation(pid, "x"), ECHO: ECHO}
    issue = outcome(gp.post("/fhir/Observation", json=unknown), 400)
    assert "extra_forbidden" in issue["diagnostics"]
    wrong_value = {**observation(pid, "x"), "valueQuantity": {"value": ECHO}}
    outcome(gp.post("/fhir/Observation", json=wrong_value), 400)
    not_json = gp.post("/fhir/Observation", content=f"{{{ECHO}", headers={"content-type": FHIR})
    assert outcome(not_json, 400)["code"] == "structure"
    mismatch = gp.post("/fhir/Patient", json=observation(pid, ECHO))
    outcome(mismatch, 400)
    other_patient = observation("f" * 32, ECHO)
    outcome(gp.post("/fhir/Observation", json=other_patient), 422)
    as_form = gp.post("/fhir/Observation", data={"a": ECHO})
    assert outcome(as_form, 415)["code"] == "not-supported"
    huge = json.dumps({**observation(pid, "x"), "note": [{"text": "x" * (1024 * 1024)}]})
    too_big = gp.post("/fhir/Observation", content=huge, headers={"content-type": FHIR})
    assert outcome(too_big, 413)["code"] == "too-costly"
    assert outcome(gp.post("/fhir/AuditEvent", json={"resourceType": "AuditEvent"}), 405)
    assert outcome(gp.post("/fhir/Consent", json={"resourceType": "Consent"}), 405)
    assert outcome(gp.get(f"/fhir/Observation/{ECHO}!"), 400)
    bad_purpose = gp.get(
        "/fhir/Observation", params={"patient": pid}, headers={"X-Purpose-Of-Use": ECHO}
    )
    assert outcome(bad_purpose, 400)["code"] == "value"
    assert outcome(gp.get("/fhir/Observation"), 400)["code"] == "required"
    # a file smuggled inline past the upload's type and size checks
    inline = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "content": [
            {"attachment": {"contentType": "application/x-msdownload", "data": "TVqQAAMA"}}
        ],
    }
    assert outcome(gp.post("/fhir/DocumentReference", json=inline), 422)["code"] == (
        "business-rule"
    )
    doc = world.ids["doc:own"]
    current = gp.get(f"/fhir/DocumentReference/{doc}")
    smuggled = current.json()
    smuggled["content"][0]["attachment"]["data"] = "TVqQAAMA"
    version = {"If-Match": current.headers["etag"]}
    assert outcome(gp.put(f"/fhir/DocumentReference/{doc}", json=smuggled, headers=version), 422)
    assert state(world) == before


def test_authentication_csrf_and_the_policy(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    obs = world.ids["obs:own"]
    anonymous = world.client(None)
    assert outcome(anonymous.get(f"/fhir/Observation/{obs}"), 401)["code"] == "login"
    no_csrf = world.client("gp")
    del no_csrf.headers["x-csrf-token"]
    before = state(world)
    assert outcome(no_csrf.post("/fhir/Observation", json=observation(pid, "x")), 403)
    assert state(world) == before
    for name in ("admin", "dpo"):
        issue = outcome(world.client(name).get(f"/fhir/Observation/{obs}"), 403)
        assert issue == {"severity": "error", "code": "forbidden", "diagnostics": "access denied"}
    patient = world.client("own")
    assert outcome(patient.post("/fhir/Observation", json=observation(pid, "x")), 403)
    other = world.ids["obs:other"]
    refused = patient.get(f"/fhir/Observation/{other}")
    assert outcome(refused, 403)["code"] == "forbidden" and "deny." not in refused.text
    radio = world.client("radio")
    default = radio.get(f"/fhir/Observation/{obs}")  # default purpose: teleconsultation
    assert default.status_code == 200
    world.clock.advance(minutes=6)
    world.step_up("own")
    assert world.client("own").get(f"/fhir/Patient/{pid}/$everything").status_code == 200


def test_the_staff_directory_and_the_audit_entries(world: WebWorld) -> None:
    """FHIR Practitioner: administrators keep it (fresh second factor), everyone signed in reads
    it. FHIR AuditEvent: the DPO reads and searches the entries; practitioners do not."""
    practitioner = {
        "resourceType": "Practitioner",
        "name": [{"family": "Généraliste", "given": ["Gaston"], "prefix": ["Dr"]}],
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "10000000009"}],
    }
    world.step_up("admin")
    created = world.client("admin").post("/fhir/Practitioner", json=practitioner)
    assert created.status_code == 201, created.text
    url = f"/fhir/Practitioner/{created.json()['id']}"
    for who in ("gp", "own", "dpo", "admin"):
        read = world.client(who).get(url)
        assert read.status_code == 200 and read.json()["name"][0]["family"] == "Généraliste"
    assert outcome(world.client("gp").post("/fhir/Practitioner", json=practitioner), 403)
    assert outcome(
        world.client("own").put(url, json=created.json(), headers={"If-Match": 'W/"1"'}), 403
    )
    pid = world.users["own"].user_id
    entries = world.client("dpo").get("/fhir/AuditEvent", params={"patient": pid})
    assert entries.status_code == 200, entries.text
    found = [e["resource"] for e in entries.json()["entry"]]
    assert found and all(e["resourceType"] == "AuditEvent" for e in found)
    one = world.client("dpo").get(f"/fhir/AuditEvent/{found[0]['id']}")
    assert one.status_code == 200
    assert outcome(world.client("gp").get("/fhir/AuditEvent", params={"patient": pid}), 403)
    assert outcome(world.client("dpo").get(f"/fhir/Observation/{world.ids['obs:own']}"), 403)


def test_patient_lookup_by_ins_goes_through_the_blind_index(world: WebWorld) -> None:
    gp = world.client("gp")
    pid = world.users["own"].user_id
    current = gp.get(f"/fhir/Patient/{pid}")
    patient = current.json()
    ins = "184127510812345"
    patient["identifier"] = [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": ins}]
    saved = gp.put(
        f"/fhir/Patient/{pid}", json=patient, headers={"If-Match": current.headers["etag"]}
    )
    assert saved.status_code == 200, saved.text
    found = gp.get("/fhir/Patient", params={"identifier": f"urn:oid:1.2.250.1.213.1.4.8|{ins}"})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [pid]
    with world.platform.engine.connect() as conn:  # stored as a keyed hash, never in clear
        assert ins.encode() not in b"".join(
            bytes(v) if isinstance(v, bytes) else str(v).encode()
            for row in conn.exec_driver_sql("SELECT * FROM fhir_identifiers")
            for v in row
        )
    # a patient one may not see and a patient who does not exist look alike
    unknown = gp.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.250.1.213.1.4.8|2"})
    assert unknown.status_code == 403
    dpo = world.client("dpo").get(
        "/fhir/Patient", params={"identifier": f"urn:oid:1.2.250.1.213.1.4.8|{ins}"}
    )
    assert dpo.status_code == 403
    bad = gp.get("/fhir/Patient", params={"identifier": f"urn:other|{ins}"})
    assert outcome(bad, 400)["code"] == "value" and ins not in bad.text
