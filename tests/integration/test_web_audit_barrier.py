"""The audit barrier in the web layer: no response to an audited request starts before the
witness file holds a signed tree head covering its audit entry on disk; if the witness cannot
be written, the answer is a bare 503 and the action's data never leaves.

Through the real ASGI app (security headers, request log, the barrier, the routes) on a whole
platform (:mod:`web_world`). The flusher is slowed or broken with its test hook
(``WitnessFlusher.before_flush``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from secretum.audit.checkpoint import WitnessFile
from web_world import WebWorld, clinic, observation


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return clinic(tmp_path)


def witnessed_sizes(world: WebWorld) -> list[int]:
    return [
        c.tree_size for c in WitnessFile(world.platform.settings.witness_path).read().checkpoints
    ]


def audited_observation(world: WebWorld, value: str) -> tuple[TestClient, str]:
    """The GP's client and a new Observation carrying ``value``, every entry so far witnessed."""
    gp = world.client("gp")
    pid = world.users["own"].user_id
    rid = gp.post("/fhir/Observation", json=observation(pid, value)).json()["id"]
    assert world.platform.audit.flusher is not None
    world.platform.audit.wait_witnessed()
    return gp, rid


def test_an_audited_answer_waits_for_the_witness_line_covering_its_entry(world: WebWorld) -> None:
    gp = world.client("gp")
    pid = world.users["own"].user_id
    rid = gp.post("/fhir/Observation", json=observation(pid, "barrier-value")).json()["id"]
    audit = world.platform.audit
    flusher = audit.flusher
    assert flusher is not None
    audit.wait_witnessed()
    before = audit.committed_size
    held = threading.Event()
    released = threading.Event()
    seen_when_released: list[list[int]] = []

    def slow() -> None:  # the flusher holds its write until the test lets it go
        held.set()
        assert released.wait(10)

    flusher.before_flush = slow
    answered: list[float] = []
    result: list[object] = []

    def read() -> None:
        response = gp.get(f"/fhir/Observation/{rid}")
        answered.append(time.monotonic())
        result.append(response)

    reader = threading.Thread(target=read)
    reader.start()
    assert held.wait(10), "the read committed no audit entry"
    time.sleep(0.3)  # the route is done; only the barrier holds the answer now
    assert answered == [], "the answer left before the witness covered its audit entry"
    assert audit.committed_size > before and max(witnessed_sizes(world)) < audit.committed_size
    seen_when_released.append(witnessed_sizes(world))
    flusher.before_flush = None
    released.set()
    reader.join(10)
    response = result[0]
    assert response.status_code == 200 and response.json()["code"]["text"] == "barrier-value"  # type: ignore[attr-defined]
    # by the time it was answered, the head covering the read's entry was on disk
    assert max(witnessed_sizes(world)) >= audit.committed_size > before
    assert audit.witnessed_size >= audit.committed_size
    report = audit.verify(world.platform.audit_public_key)
    assert report.ok and report.witnessed_size == report.entries_verified, report.findings


def test_concurrent_reads_each_wait_for_the_witness_of_their_own_entry(world: WebWorld) -> None:
    """Reads whose entries another reader's thread committed (the group commit's leader) are
    held too: each answer owes the witness its own entry, whoever committed it."""
    _, rid = audited_observation(world, "crowd-value")
    audit = world.platform.audit
    assert audit.flusher is not None
    before = audit.committed_size
    released = threading.Event()

    def hold() -> None:  # the flusher holds its write until the test lets it go
        assert released.wait(10)

    audit.flusher.before_flush = hold
    answers: list[tuple[float, int]] = []
    lock = threading.Lock()

    def read() -> None:
        response = world.client("gp").get(f"/fhir/Observation/{rid}")
        with lock:
            answers.append((time.monotonic(), response.status_code))

    readers = [threading.Thread(target=read) for _ in range(6)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 10
    while audit.committed_size < before + 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert audit.committed_size == before + 6, "the six reads did not all commit"
    time.sleep(0.3)  # every route is done: only the barrier holds the answers
    assert answers == [], "an answer left before the witness covered its audit entry"
    opened = time.monotonic()
    audit.flusher.before_flush = None
    released.set()
    for reader in readers:
        reader.join(10)
    assert [status for _, status in answers] == [200] * 6
    assert all(at >= opened for at, _ in answers)
    assert max(witnessed_sizes(world)) >= before + 6


def test_a_failing_witness_turns_the_answer_into_a_503_without_the_data(world: WebWorld) -> None:
    gp, rid = audited_observation(world, "secret-marker-77")
    audit = world.platform.audit
    assert audit.flusher is not None

    def broken() -> None:
        raise OSError("witness disk gone")

    audit.flusher.before_flush = broken
    response = gp.get(f"/fhir/Observation/{rid}")
    assert response.status_code == 503
    assert "secret-marker-77" not in response.text and "barrier" not in response.text
    assert response.headers["content-security-policy"]  # the outer layers still ran
    audit.flusher.before_flush = None
    again = gp.get(f"/fhir/Observation/{rid}")  # the disk is back: the next flush covers all
    assert again.status_code == 200 and "secret-marker-77" in again.text
    assert audit.witnessed_size >= audit.committed_size


def test_an_answer_with_nothing_audited_since_the_last_flush_does_not_wait(
    world: WebWorld,
) -> None:
    audit = world.platform.audit
    audit.wait_witnessed()
    assert audit.flusher is not None
    audit.flusher.before_flush = lambda: (_ for _ in ()).throw(OSError("would fail"))
    assert world.client().get("/healthz").status_code == 200


def test_the_bare_app_without_services_answers() -> None:
    from fastapi.testclient import TestClient

    from secretum.web.app import create_app

    with TestClient(create_app()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
