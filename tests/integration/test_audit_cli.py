"""``secretum audit`` commands, with a fake ``secretum.bootstrap`` (the lead's composition root)."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from sqlalchemy import update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from secretum.audit import AuditEvent, AuditLog, EventAction, EventType
from secretum.audit.cli import audit_app
from secretum.audit.merkle import verify_consistency, verify_inclusion
from secretum.audit.store import audit_entries

KEY = Ed25519PrivateKey.generate()
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def audit(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    log = AuditLog(engine, KEY, tmp_path / "witness.log", checkpoint_every=4)
    with engine.begin() as conn:
        for i in range(10):
            log.append(
                conn,
                AuditEvent(
                    recorded=T0 + timedelta(seconds=i),
                    event_type=EventType.QUERY,
                    action=EventAction.EXECUTE,
                    actor_id="u-1",
                    actor_role="nurse",
                    subtype="search",
                    patient_id=f"p-{i % 2}",
                    purpose="TREAT",
                    source_address="2001:db8::7",
                ),
            )
    log.wait_witnessed()  # what answering the action waits for
    log.flush_witness()  # what the running platform's periodic tick() does
    platform = types.SimpleNamespace(engine=engine, audit=log, audit_public_key=KEY.public_key())
    bootstrap = types.ModuleType("secretum.bootstrap")
    bootstrap.open_platform = lambda: platform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "secretum.bootstrap", bootstrap)
    return log


def test_verify_ok_then_tampered(audit: AuditLog, engine: Engine) -> None:
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 0, result.output
    assert "audit log OK" in result.output and "entries verified: 10" in result.output
    with engine.begin() as conn:
        conn.execute(update(audit_entries).where(audit_entries.c.seq == 6).values(actor_id="x"))
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 1
    assert "first problem: modified at 6" in result.output
    report = json.loads(runner.invoke(audit_app, ["verify", "--json"]).output)
    assert report["ok"] is False and report["findings"][0]["seq"] == 6


def test_proof_inclusion(audit: AuditLog) -> None:
    result = runner.invoke(audit_app, ["proof", "inclusion", "3"])
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert proof["tree_size"] == 8 and proof["verified"] and proof["root_signed"]
    path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
    assert verify_inclusion(
        3, 8, bytes.fromhex(proof["leaf_hash"]), path, bytes.fromhex(proof["root_hash"])
    )
    result = runner.invoke(audit_app, ["proof", "inclusion", "9", "--size", "10"])
    assert result.exit_code == 0 and json.loads(result.output)["root_signed"] is None
    assert runner.invoke(audit_app, ["proof", "inclusion", "12"]).exit_code == 2


def test_proof_consistency(audit: AuditLog) -> None:
    result = runner.invoke(audit_app, ["proof", "consistency", "4", "8"])
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    path = [bytes.fromhex(h) for h in proof["consistency_path"]]
    first, second = bytes.fromhex(proof["first_hash"]), bytes.fromhex(proof["second_hash"])
    assert verify_consistency(4, 8, first, second, path)
    assert {c.tree_size: c.root_hash for c in audit.checkpoints()}[8] == second
    assert runner.invoke(audit_app, ["proof", "consistency", "8", "4"]).exit_code == 2


def test_checkpoint_command(audit: AuditLog, tmp_path: Path) -> None:
    result = runner.invoke(audit_app, ["checkpoint"])
    assert result.exit_code == 0 and "checkpoint: size 10" in result.output
    result = runner.invoke(audit_app, ["checkpoint"])
    assert "no new entries" in result.output and "witness at size 10" in result.output
    lines = (tmp_path / "witness.log").read_text().splitlines()
    # the fixture's transaction: its checkpoints at 4 and 8, its head at 10; the command's
    # checkpoint at 10 has the root already witnessed at 10: no second line
    sizes = [json.loads(line)["tree_size"] for line in lines]
    assert sizes == [4, 8, 10]
    assert audit.checkpoints()[-1].root_hash.hex() == json.loads(lines[-1])["root_hash"]


def test_export(audit: AuditLog, tmp_path: Path) -> None:
    out = tmp_path / "audit.ndjson"
    result = runner.invoke(audit_app, ["export", "--patient", "p-1", "--out", str(out)])
    assert result.exit_code == 0 and "5 AuditEvent resources" in result.output
    resources = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(resources) == 5
    for resource in resources:
        FhirAuditEvent.model_validate(resource)
    everything = runner.invoke(audit_app, ["export"]).output.splitlines()
    assert len(everything) == 10
    assert runner.invoke(audit_app, ["export", "--patient", "Jean Dupont"]).exit_code == 2
