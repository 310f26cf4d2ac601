"""``secretum imaging node add|list|revoke`` end to end, on a fresh data directory."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("verb", [["dicom"], ["serve"]])
def test_dicom_verb_and_serve_answer_dcmtk(env: Path, verb: list[str]) -> None:
    """``secretum dicom`` (and ``secretum serve`` with SECRETUM_DICOM_ENABLED) answer a
    registered node's echoscu over TLS 1.3, and refuse it without its certificate."""
    out = env / "certs"
    text = _run("imaging", "node", "add", "PACS", "PACS", "--scopes", "query", "--out", str(out))
    nid = re.search(r"registered (node-[0-9a-f]+)", text).group(1)  # type: ignore[union-attr]
    port = _free_port()
    environ = {k: v for k, v in os.environ.items()}
    environ.update(SECRETUM_DICOM_PORT=str(port), SECRETUM_DICOM_ENABLED="true",
                   SECRETUM_PORT=str(_free_port()), SECRETUM_DICOM_AE_TITLE="ARCHIVE",
                   COLUMNS="200")  # fmt: skip
    command = [sys.executable, "-m", "secretum.cli", *verb]
    proc = subprocess.Popen(
        command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    assert proc.stdout is not None
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 60
        while "DICOM (DIMSE) AE" not in "".join(output):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        tls = ["+tls", str(out / f"{nid}.key"), str(out / f"{nid}.pem"), "+cf", str(out / "ca.pem")]
        echo = ["echoscu", "-aet", "PACS", "-aec", "ARCHIVE", "-to", "10"]
        peer = ["127.0.0.1", str(port)]
        ok = subprocess.run([*echo, *tls, *peer], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr + "".join(output)
        plain = subprocess.run([*echo, *peer], capture_output=True, text=True, timeout=60)
        assert plain.returncode != 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
