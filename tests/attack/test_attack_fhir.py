"""A signed-in user probes the FHIR API: what it tells them of other people, and what it lets
them plant.

* Enumeration: a lookup by e-mail or INS of a patient one may not see, and of nobody, must get
  the same status and the same bytes; so must a write that gives a Patient an INS another
  patient holds and one that gives it a free INS (the deny reason goes to the log and the
  audit, never to the client).
* Parser exhaustion: JSON nested thousands deep is a 400 OperationOutcome, and the server
  stays up (it was a RecursionError, a 500).
* Server-owned fields: a DocumentReference's attachment url, size and hash are the server's;
  a client's own (pointing at another patient's document) are not kept.
* Links: ``Location`` and ``fullUrl`` start with the configured public address, whatever the
  ``Host`` header says.

Every test runs on SQLite and on PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from structlog.testing import capture_logs

from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.audit.store import audit_entries
from secretum.records.fhir import MAX_DEPTH, InvalidResource, parse_json
from secretum.records.service import file_url
from secretum.web.deps import SESSION_COOKIE
from web_world import PDF, WebWorld, clinic, document, observation

FHIR = "application/fhir+json"
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
PUBLIC = "https://secretum.example"
#: The INS and e-mail address written on the record of ``other`` and of ``nocare``.
IDENTITY = {
    "other": ("284127510812345", "berenice.quintal@mail.test"),
    "nocare": ("175037510854321", "casimir.ondule@mail.test"),
}
FIXED_DENY = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden","diagnostics":"access denied"}]}'  # noqa: E501


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> WebWorld:
    """The clinic (see :mod:`web_world`) on ``db_url``, its links at :data:`PUBLIC`; the
    Patients ``other`` and ``nocare`` carry an INS and an e-mail address."""
    world = clinic(tmp_path, database_url=db_url, public_url=PUBLIC)
    for name, author, purpose in (
        ("other", "gp", Purpose.TELECONSULTATION),
        ("nocare", "radio", Purpose.TELERADIOLOGY),
    ):
        ins, email = IDENTITY[name]
        pid = world.users[name].user_id
        actor = world.users[author].actor
        current = world.services.records.read(
            RequestContext(actor, purpose, world.clock.now), "Patient", pid
        )
        body = {
            **current.resource,
            "identifier": [{"system": INS_SYSTEM, "value": ins}],
            "telecom": [{"system": "email", "value": email}],
        }
        world.services.records.update(
            RequestContext(actor, purpose, world.clock.now), "Patient", pid, body
        )
    return world


def by_email(client: Any, email: str) -> Any:
    return client.get("/fhir/Patient", params={"email": email})


def by_ins(client: Any, ins: str) -> Any:
    return client.get("/fhir/Patient", params={"identifier": f"{INS_SYSTEM}|{ins}"})


def last_audit(world: WebWorld) -> dict[str, Any]:
    with world.platform.engine.connect() as conn:
        query = select(audit_entries).order_by(audit_entries.c.seq.desc()).limit(1)
        return dict(conn.execute(query).mappings().one())


# -- enumeration ----------------------------------------------------------------------------------


def test_a_lookup_answers_alike_for_a_forbidden_and_an_unknown_patient(world: WebWorld) -> None:
    """A patient looking up another patient's e-mail or INS, and a practitioner looking up a
    patient outside their care team, get the bytes an unknown one gets: on the old code the
    first said ``deny.not-own-record`` (or ``not-in-care-team``), the other
    ``deny.health-data-without-patient``."""
    patient, gp = world.client("own"), world.client("gp")
    ins, email = IDENTITY["other"]
    nocare_ins, nocare_email = IDENTITY["nocare"]
    probes = [
        (patient, by_email, email, "nobody.here@mail.test"),
        (patient, by_ins, ins, "299999999999999"),
        (gp, by_email, nocare_email, "nobody.here@mail.test"),
        (gp, by_ins, nocare_ins, "299999999999999"),
    ]
    for client, lookup, existing, unknown in probes:
        forbidden, nothing = lookup(client, existing), lookup(client, unknown)
        assert (forbidden.status_code, forbidden.content) == (nothing.status_code, nothing.content)
        assert forbidden.status_code == 403 and forbidden.content == FIXED_DENY
        assert forbidden.headers["content-type"] == nothing.headers["content-type"]
    # the lookup works for whom it should (so the 403s above are refusals, not breakage)
    found = by_ins(gp, ins)
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [world.users["other"].user_id]


def test_the_deny_reason_goes_to_the_log_and_the_audit_not_to_the_client(
    world: WebWorld,
) -> None:
    other = world.users["other"].user_id
    with capture_logs() as logs:
        refused = by_email(world.client("own"), IDENTITY["other"][1])
    assert refused.content == FIXED_DENY and b"deny." not in refused.content
    assert {"event": "fhir.denied", "reason": "deny.not-own-record"}.items() <= next(
        e for e in logs if e.get("event") == "fhir.denied"
    ).items()
    entry = last_audit(world)
    assert (entry["subtype"], entry["outcome"], entry["patient_id"]) == ("search", 4, other)
    assert entry["actor_id"] == world.users["own"].user_id


def test_reads_of_an_id_refuse_with_the_fixed_answer(world: WebWorld) -> None:
    """Documented rule: a read of an id one may not see is 403 with the fixed body (no reason),
    a read of an id that names nothing is 404 (ids are 128 random bits: no person behind)."""
    patient = world.client("own")
    for url in (
        f"/fhir/Observation/{world.ids['obs:other']}",
        f"/fhir/Patient/{world.users['other'].user_id}",
        f"/fhir/Observation?patient={world.users['other'].user_id}",
        f"/fhir/DocumentReference/{world.ids['doc:other']}/$content",
    ):
        refused = patient.get(url)
        assert (refused.status_code, refused.content) == (403, FIXED_DENY), url
    for name in ("admin", "dpo"):
        refused = world.client(name).get(f"/fhir/Observation/{world.ids['obs:own']}")
        assert (refused.status_code, refused.content) == (403, FIXED_DENY)
    assert patient.get(f"/fhir/Observation/{'0' * 32}").status_code == 404


def test_a_read_with_a_session_ended_elsewhere_is_refused_at_once(world: WebWorld) -> None:
    """The read checks the session in its worker thread, at every request, from the store:
    signed out (on any instance: the store is shared), forged or absent, no data leaves and no
    successful read is audited."""
    gp = world.client("gp")
    pid = world.users["own"].user_id
    rid = gp.post("/fhir/Observation", json=observation(pid, "ended-session-value")).json()["id"]
    assert gp.get(f"/fhir/Observation/{rid}").status_code == 200

    def reads_audited() -> int:
        with world.platform.engine.connect() as conn:
            rows = conn.execute(
                select(audit_entries.c.outcome).where(
                    audit_entries.c.resource_id == rid, audit_entries.c.subtype == "read"
                )
            ).all()
        return sum(1 for row in rows if row.outcome == 0)

    before = reads_audited()
    signed_out = world.services.identity.sessions.sign_out(
        world.users["gp"].session_id, now=world.clock.now
    )
    assert signed_out
    forged = world.client()
    forged.cookies.set(SESSION_COOKIE, "x" * 43)
    for client in (gp, forged, world.client()):
        response = client.get(f"/fhir/Observation/{rid}")
        assert response.status_code == 401
        assert response.json()["issue"][0]["code"] == "login"
        assert "ended-session-value" not in response.text
    assert reads_audited() == before


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    email=st.emails(),
    ins=st.from_regex(r"[12][0-9]{14}", fullmatch=True),
)
def test_any_unknown_identifier_answers_as_an_existing_forbidden_one(
    world: WebWorld, email: str, ins: str
) -> None:
    """Over random e-mail addresses and INS: an unknown one answers the very bytes the existing
    ones answer to a caller who may not see them."""
    patient = world.client("own")
    existing_ins, existing_email = IDENTITY["other"]
    if email.lower() not in {existing_email, IDENTITY["nocare"][1]}:
        a, b = by_email(patient, email), by_email(patient, existing_email)
        assert (a.status_code, a.content) == (b.status_code, b.content) == (403, FIXED_DENY)
    if ins not in {existing_ins, IDENTITY["nocare"][0]}:
        a, b = by_ins(patient, ins), by_ins(patient, existing_ins)
        assert (a.status_code, a.content) == (b.status_code, b.content) == (403, FIXED_DENY)


def _give_ins(world: WebWorld, ins: str) -> tuple[int, dict[str, Any]]:
    """``gp`` writes ``ins`` on the Patient of ``own`` (their patient): the status and the
    resource returned, the INS, version and time left out (the client's own input)."""
    gp = world.client("gp")
    pid = world.users["own"].user_id
    current = gp.get(f"/fhir/Patient/{pid}")
    body = {**current.json(), "identifier": [{"system": INS_SYSTEM, "value": ins}]}
    saved = gp.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": current.headers["etag"]})
    shown = saved.json()
    shown.pop("meta", None)
    if shown.get("resourceType") == "Patient":
        assert shown["identifier"][0]["value"] == ins
        shown["identifier"][0]["value"] = "<the INS written>"
    return saved.status_code, shown


def test_writing_another_patients_ins_does_not_tell_that_it_is_taken(world: WebWorld) -> None:
    """``gp`` gives their patient the INS of ``nocare`` (whom they may not see), then a free
    one: the same answer both times, and a lookup of each finds their own patient only. On
    the old code the first was a 409 "another patient holds this INS". The collision is not
    lost: it is an audit alert naming both patients (for identity vigilance)."""
    gp = world.client("gp")
    own, nocare = world.users["own"].user_id, world.users["nocare"].user_id
    taken = _give_ins(world, IDENTITY["nocare"][0])
    with world.platform.engine.connect() as conn:
        alerts = conn.execute(
            select(audit_entries).where(
                audit_entries.c.event_type == "110113", audit_entries.c.resource_type == "Patient"
            )
        ).mappings()
        assert [(a["resource_id"], a["patient_id"]) for a in alerts] == [(own, nocare)]
    found_taken = by_ins(gp, IDENTITY["nocare"][0])
    free = _give_ins(world, "299999999999999")
    found_free = by_ins(gp, "299999999999999")
    assert taken == free and taken[0] == 200
    assert found_taken.status_code == found_free.status_code == 200
    assert [e["resource"]["id"] for e in found_taken.json()["entry"]] == [own]
    assert [e["resource"]["id"] for e in found_free.json()["entry"]] == [own]
    # and the holder's own carers still find their patient (among those they may see)
    radio = world.client("radio")
    radio.headers["x-purpose-of-use"] = "teleradiology"
    holders = by_ins(radio, IDENTITY["nocare"][0]).json()["entry"]
    assert nocare in {e["resource"]["id"] for e in holders}


# -- parser exhaustion ----------------------------------------------------------------------------


def _nested(depth: int, kind: str) -> bytes:
    """An Observation whose ``code`` holds ``depth`` containers in all (arrays or objects)."""
    inner = depth - 1  # the resource itself is one
    if kind == "array":
        deep = "[" * inner + "]" * inner
    else:
        deep = '{"a":' * (inner - 1) + "{}" + "}" * (inner - 1)
    return ('{"resourceType":"Observation","code":' + deep + "}").encode()


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_400_and_the_server_stays_up(
    world: WebWorld, depth: int, kind: str
) -> None:
    gp = world.client("gp")
    body = _nested(depth, kind)
    answer = gp.post("/fhir/Observation", content=body, headers={"content-type": FHIR})
    assert answer.status_code == 400, answer.text[:200]
    issue = answer.json()["issue"][0]
    assert issue["code"] == "structure" and str(MAX_DEPTH) in issue["diagnostics"]
    pid = world.users["own"].user_id
    assert gp.post("/fhir/Observation", json=observation(pid, "after")).status_code == 201


@pytest.mark.parametrize("kind", ["array", "object"])
def test_the_depth_limit_is_exact(world: WebWorld, kind: str) -> None:
    """At the limit the body is parsed (then refused by FHIR validation, not by depth); one
    level more is refused before any parser runs."""
    at, over = _nested(MAX_DEPTH, kind), _nested(MAX_DEPTH + 1, kind)
    assert isinstance(parse_json(at), dict)
    with pytest.raises(InvalidResource, match="deeper than"):
        parse_json(over)
    with pytest.raises(InvalidResource, match="deeper than"):
        parse_json(json.loads(over.replace(b"[]", b"[1]")) if kind == "array" else json.loads(over))
    gp = world.client("gp")
    headers = {"content-type": FHIR}
    at_limit = gp.post("/fhir/Observation", content=at, headers=headers).json()["issue"][0]
    assert "deeper than" not in at_limit["diagnostics"]
    too_deep = gp.post("/fhir/Observation", content=over, headers=headers).json()["issue"][0]
    assert "deeper than" in too_deep["diagnostics"]


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"resourceType": "Observation", "note": [{"text": '"[{' * 500}]})
    assert parse_json(text.encode())["note"][0]["text"].startswith('"[{')


# -- server-owned attachment fields ---------------------------------------------------------------


def test_a_client_cannot_point_its_document_at_another_patients_file(world: WebWorld) -> None:
    """``gp`` creates a DocumentReference about their patient whose attachment names the file
    of ``nocare``'s document (which ``gp`` may not read), with a forged size and hash. The
    server keeps none of it: the resource shows no file, and its $content is not that file."""
    gp = world.client("gp")
    pid, victim = world.users["own"].user_id, world.ids["doc:nocare"]
    forged = {"url": file_url(victim, 1), "size": 4, "hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    body = document(pid, "forged")
    body["content"] = [{"attachment": {"contentType": "application/pdf", **forged}}]
    created = gp.post("/fhir/DocumentReference", json=body)
    assert created.status_code == 201, created.text
    attachment = created.json()["content"][0]["attachment"]
    assert not set(attachment) & {"url", "size", "hash", "contentType"}
    rid = created.json()["id"]
    stored = gp.get(f"/fhir/DocumentReference/{rid}").json()["content"][0]["attachment"]
    assert not set(stored) & {"url", "size", "hash"}
    content = gp.get(f"/fhir/DocumentReference/{rid}/$content")
    assert content.status_code == 404 and PDF not in content.content
    # nor through an update of that file-less document
    current = gp.get(f"/fhir/DocumentReference/{rid}")
    again = {**current.json(), "content": [{"attachment": forged}]}
    updated = gp.put(
        f"/fhir/DocumentReference/{rid}", json=again, headers={"If-Match": current.headers["etag"]}
    )
    assert updated.status_code == 200
    assert not set(updated.json()["content"][0]["attachment"]) & set(forged)


def test_an_update_keeps_the_servers_values_of_a_stored_file(world: WebWorld) -> None:
    gp = world.client("gp")
    doc = world.ids["doc:own"]
    current = gp.get(f"/fhir/DocumentReference/{doc}")
    mine = current.json()["content"][0]["attachment"]
    forged = {"url": file_url(world.ids["doc:nocare"], 1), "size": 1, "hash": "AAAA"}
    body = {**current.json(), "content": [{"attachment": {**mine, **forged}}]}
    saved = gp.put(
        f"/fhir/DocumentReference/{doc}", json=body, headers={"If-Match": current.headers["etag"]}
    )
    assert saved.status_code == 200
    kept = saved.json()["content"][0]["attachment"]
    assert {k: kept[k] for k in ("url", "size", "hash")} == {
        k: mine[k] for k in ("url", "size", "hash")
    }
    assert mine["size"] == len(PDF)
    served = gp.get(f"/fhir/DocumentReference/{doc}/$content")
    assert served.status_code == 200 and served.content == PDF


def test_a_document_uploaded_with_forged_fields_gets_the_servers(world: WebWorld) -> None:
    """The upload use case: whatever the resource says, url, size and hash are the file's."""
    gp = world.users["gp"]
    pid = world.users["own"].user_id
    body = document(pid, "upload")
    body["content"] = [
        {"attachment": {"url": file_url(world.ids["doc:nocare"], 1), "size": 1, "hash": "AAAA"}}
    ]
    made = world.services.documents.create_document(
        RequestContext(gp.actor, Purpose.TELECONSULTATION, world.clock.now),
        body,
        io.BytesIO(PDF),
        "application/pdf",
    )
    attachment = made.resource["content"][0]["attachment"]
    assert attachment["url"] == file_url(made.resource_id, 1) and attachment["size"] == len(PDF)
    assert attachment["hash"] != "AAAA"


# -- links -----------------------------------------------------------------------------------------


def test_links_use_the_public_url_not_the_host_header(world: WebWorld) -> None:
    gp = world.client("gp")
    gp.headers["host"] = "evil.example"
    pid = world.users["own"].user_id
    created = gp.post("/fhir/Observation", json=observation(pid, "host"))
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith(f"{PUBLIC}/fhir/Observation/")
    for url in (f"/fhir/Observation?patient={pid}", f"/fhir/Patient/{pid}/$everything"):
        found = gp.get(url)
        assert found.status_code == 200
        links = [e["fullUrl"] for e in found.json()["entry"]]
        assert links and all(link.startswith(f"{PUBLIC}/fhir/") for link in links)
        assert "evil.example" not in found.text
    assert not re.search("evil", created.text)
