"""``secretum imaging node add|list|revoke`` end to end, on a fresh data directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from rich.console import Console
from typer.testing import CliRunner

from secretum import imaging_cli
from secretum.cli import app

PASSPHRASE = "correct horse battery staple, but longer"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SECRETUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SECRETUM_KEYSTORE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SECRETUM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setattr(imaging_cli, "console", Console(width=200))
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    return tmp_path


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_add_issue_list_revoke(env: Path) -> None:
    out = env / "certs"
    text = _run("imaging", "node", "add", "CT Nord", "CTNORD", "--scopes", "store,query",
                "--out", str(out), "--host", "127.0.0.1", "--port", "11112")  # fmt: skip
    node_id = re.search(r"registered (node-[0-9a-f]+)", text)
    assert node_id is not None, text
    nid = node_id.group(1)
    cert = x509.load_pem_x509_certificate((out / f"{nid}.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (out / f"{nid}.key").stat().st_mode & 0o077 == 0
    listing = _run("imaging", "node", "list")
    assert nid in listing and "CTNORD" in listing and "query,store" in listing
    # the same AE title again, or the same certificate again: refused, one error line
    again = _run("imaging", "node", "add", "x", "CTNORD", "--out", str(out), code=1)
    assert "already registered" in again
    bound = _run("imaging", "node", "add", "x", "OTHER", "--cert", str(out / f"{nid}.pem"),
                 code=1)  # fmt: skip
    assert "already registered" in bound
    _run("imaging", "node", "add", "x", "BAD\\AE", "--out", str(out), code=1)
    _run("imaging", "node", "add", "x", "AE2", "--scopes", "delete", "--out", str(out), code=1)
    _run("imaging", "node", "revoke", nid)
    assert nid not in _run("imaging", "node", "list")
    assert "revoked" in _run("imaging", "node", "list", "--all")
    _run("imaging", "node", "revoke", nid, code=1)
