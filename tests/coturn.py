"""coturn on loopback for the TURN tests: ``use-auth-secret`` (TURN REST API credentials) and
TLS on its port, its certificate issued by the internal CA (:mod:`secretum.pki`).

:func:`coturn` starts ``turnserver`` (Debian package ``coturn``) on free ports of 127.0.0.1 in a
temporary directory and stops it afterwards; :func:`allocate` asks it for a relay allocation with
``turnutils_uclient`` (TLS over TCP, the CA checked) and says whether it was granted.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from secretum.pki.ca import create_root_ca, generate_leaf_key, issue_server_certificate
from secretum.pki.pem import certificate_to_pem, private_key_to_pem

TURNSERVER = "/usr/bin/turnserver"
UCLIENT = "/usr/bin/turnutils_uclient"


@dataclass(frozen=True)
class Coturn:
    host: str
    tls_port: int
    secret: str
    ca_file: Path
    log_file: Path

    @property
    def url(self) -> str:
        return f"turns:{self.host}:{self.tls_port}?transport=tcp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def coturn(directory: Path) -> Iterator[Coturn]:
    now = datetime.now(UTC)
    ca = create_root_ca(now)
    key = generate_leaf_key()
    cert = issue_server_certificate(ca, ["127.0.0.1"], key.public_key(), now)
    (directory / "ca.pem").write_bytes(certificate_to_pem(ca.certificate))
    (directory / "cert.pem").write_bytes(certificate_to_pem(cert))
    (directory / "key.pem").write_bytes(private_key_to_pem(key))
    (directory / "key.pem").chmod(0o600)
    secret = secrets.token_urlsafe(32)
    plain, tls, relay = free_port(), free_port(), free_port()
    log = directory / "turnserver.log"
    args = [
        TURNSERVER, "-n", "--no-cli", "--simple-log", f"--log-file={log}",
        "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
        f"--listening-port={plain}", f"--tls-listening-port={tls}",
        "--no-udp", "--no-dtls", "--allow-loopback-peers",
        f"--min-port={relay}", f"--max-port={relay + 20}",
        "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=secretum.test",
        f"--cert={directory / 'cert.pem'}", f"--pkey={directory / 'key.pem'}",
        f"--pidfile={directory / 'turnserver.pid'}",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, "turnserver stopped"
            try:
                socket.create_connection(("127.0.0.1", tls), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "turnserver does not listen"
                time.sleep(0.1)
        yield Coturn("127.0.0.1", tls, secret, directory / "ca.pem", log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def allocate(server: Coturn, username: str, password: str) -> bool:
    """A relay allocation over TLS with these credentials (two clients relaying through it):
    True if granted and the packets went through."""
    done = subprocess.run(
        [
            UCLIENT,
            "-t",
            "-S",
            "-y",
            "-n",
            "2",
            "-m",
            "1",
            "-E",
            str(server.ca_file),
            "-p",
            str(server.tls_port),
            "-u",
            username,
            "-w",
            password,
            server.host,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0 and b"Cannot complete Allocation" not in done.stdout
