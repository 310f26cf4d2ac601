"""The ``secretum`` command end to end, on a fresh data directory."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from secretum.cli import app

PASSPHRASE = "correct horse battery staple, but longer"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "SECRETUM_DATA_DIR": str(tmp_path / "data"),
        "SECRETUM_KEYSTORE_PASSPHRASE": PASSPHRASE,
        "SECRETUM_CONFIG": str(tmp_path / "none.toml"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_init_rotate_retire_shred_and_verify(env: dict[str, str]) -> None:
    run("init")
    data = Path(env["SECRETUM_DATA_DIR"])
    assert (data / "keys" / "keystore.json").stat().st_mode & 0o077 == 0
    assert PASSPHRASE not in (data / "keys" / "keystore.json").read_text()
    again = CliRunner().invoke(app, ["init"])
    assert again.exit_code == 1 and "already initialised" in again.output

    from secretum.bootstrap import open_platform

    platform = open_platform()
    with platform.engine.begin() as conn:
        platform.records.put(
            conn, patient_id="pat-1", record_type="Observation", record_id="obs-1", payload=b"x"
        )
    platform.close()

    assert "rotated to KEK v2" in run("keys", "rotate")
    assert "current" in run("keys", "status")
    assert "destroyed" in run("keys", "retire", "--below", "2")
    refused = CliRunner().invoke(app, ["keys", "shred", "pat-1"])
    assert refused.exit_code == 1 and "--yes" in refused.output
    assert "shredded" in run("keys", "shred", "pat-1", "--yes")
    out = run("audit", "verify")
    assert "OK" in out or "ok" in out.lower()


def test_wrong_passphrase_is_refused(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    run("init")
    monkeypatch.setenv("SECRETUM_KEYSTORE_PASSPHRASE", "not the passphrase")
    result = CliRunner().invoke(app, ["keys", "status"])
    assert result.exit_code != 0
    assert "not the passphrase" not in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DevServer:
    url: str
    data: Path
    output: list[str]  # what the process printed so far (a thread reads it)

    def printed(self, pattern: str, seconds: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, "".join(self.output))
            if found:
                return found
            time.sleep(0.1)
        pytest.fail(f"not printed: {pattern}\n{''.join(self.output)}")


def _start(tmp_path: Path, *flags: str) -> Iterator[DevServer]:
    port = _free_port()
    data = tmp_path / "devdata"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETUM_")}
    env.update(
        SECRETUM_DATA_DIR=str(data),
        SECRETUM_PORT=str(port),
        SECRETUM_CONFIG=str(tmp_path / "none.toml"),
        COLUMNS="200",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "secretum.cli", "serve", "--dev", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "".join(output)
            if (data / "pki" / "ca.pem").exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))
                    httpx.get(f"{url}/healthz", verify=ctx, timeout=2)
                    break
                except (httpx.HTTPError, ssl.SSLError, OSError):
                    pass
            time.sleep(0.2)
        else:
            pytest.fail("the server did not start")
        yield DevServer(url, data, output)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    for server in _start(tmp_path):
        yield server.url, server.data


def test_first_start_prints_the_one_time_admin_setup_link(tmp_path: Path) -> None:
    for server in _start(tmp_path):
        link = server.printed(r"(https://\S+/setup/[A-Za-z0-9_\-]+)").group(1)
        ctx = ssl.create_default_context(cafile=str(server.data / "pki" / "ca.pem"))
        path = link.split("/", 3)[3]
        form = httpx.get(f"{server.url}/{path}", verify=ctx)
        assert form.status_code == 200 and 'name="password"' in form.text
        assert "/setup/" not in (server.data / "secretum.db").read_bytes().decode("latin-1")


def test_demo_flag_seeds_the_clinic_and_needs_no_setup_link(tmp_path: Path) -> None:
    for server in _start(tmp_path, "--demo"):
        server.printed(r"admin\s+\S+@")  # the demo accounts
        # The address printed is the one passkeys work at (localhost), not the bound address.
        server.printed(r"open https://localhost:\d+/ ")
        server.printed(r"Uvicorn running on https://127\.0\.0\.1:\d+")
        assert "/setup/" not in "".join(server.output)


def test_make_run_flow_serves_tls13_with_dev_passphrase(dev_server: tuple[str, Path]) -> None:
    url, data = dev_server
    passphrase_file = data / "dev-passphrase"
    assert passphrase_file.stat().st_mode & 0o777 == 0o600
    ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))
    response = httpx.get(f"{url}/healthz", verify=ctx)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "max-age" in response.headers["strict-transport-security"]
    old = ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        httpx.get(f"{url}/healthz", verify=old)
