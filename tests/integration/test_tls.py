"""Real TLS handshakes against the real uvicorn server on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from fastapi import APIRouter, Request

from secretum.pki import (
    CertificateAuthority,
    ServerIdentity,
    certificate_names,
    certificate_to_pem,
    create_root_ca,
    generate_leaf_key,
    issue_client_certificate,
    issue_server_certificate,
    load_or_create_server_identity,
    verify_server_certificate,
    write_certificates_pem,
    write_private_key_pem,
)
from secretum.web import ServerThread, build_server_ssl_context, create_app
from secretum.web.tls import client_certificate_id

NAMES = ["localhost", "127.0.0.1", "::1"]
NOW = datetime.now(UTC)  # real handshakes check validity against the real clock


@dataclass
class Pki:
    ca: CertificateAuthority
    other_ca: CertificateAuthority
    identity: ServerIdentity
    dir: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca = create_root_ca(NOW)
    identity = load_or_create_server_identity(
        base / "server", ca_certificate=ca.certificate, unlock_ca=lambda: ca, names=NAMES, now=NOW
    )
    return Pki(ca, create_root_ca(NOW, common_name="Other CA"), identity, base)


def _client_files(pki: Pki, issuer: CertificateAuthority, name: str, server: bool = False):
    key = generate_leaf_key()
    if server:  # a certificate without clientAuth
        cert = issue_server_certificate(issuer, ["localhost"], key.public_key(), NOW)
    else:
        cert = issue_client_certificate(issuer, name, key.public_key(), NOW)
    certfile = write_certificates_pem(pki.dir / f"{name}.pem", [cert])
    keyfile = write_private_key_pem(pki.dir / f"{name}.key", key)
    return certfile, keyfile


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[ServerThread]:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(request: Request) -> dict[str, object]:
        tls = request.scope.get("extensions", {}).get("tls", {})
        return {"client": client_certificate_id(request.scope), "tls": tls.get("tls_version")}

    app = create_app(extra_routers=[router])
    ident = pki.identity
    with ServerThread(
        app, certfile=ident.certfile, keyfile=ident.keyfile, cafile=ident.cafile
    ) as running:
        yield running


def _trusting_ctx(pki: Pki, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.identity.cafile))
    for attr, value in versions.items():
        setattr(ctx, attr, value)
    return ctx


def _get(
    ctx: ssl.SSLContext, port: int, path: str, host: str = "localhost"
) -> tuple[int, bytes, ssl.SSLSocket]:
    """One HTTP/1.1 GET over a fresh TLS connection; raises on any TLS failure."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = ctx.wrap_socket(raw, server_hostname=host)
    try:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    finally:
        tls.close()
    if not data:
        raise ConnectionError("connection closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, tls


def test_tls13_client_gets_healthz(server: ServerThread, pki: Pki) -> None:
    ctx = _trusting_ctx(pki)
    response = httpx.get(f"{server.url}/healthz", verify=ctx)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "max-age=" in response.headers["strict-transport-security"]
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"


def test_tls12_client_is_refused_at_handshake(server: ServerThread, pki: Pki) -> None:
    ctx = _trusting_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        _get(ctx, server.port, "/healthz")


def test_server_context_is_pinned_to_tls13(pki: Pki) -> None:
    ident = pki.identity
    ctx = build_server_ssl_context(ident.certfile, ident.keyfile, ident.cafile)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    with pytest.raises(ValueError):
        build_server_ssl_context(ident.certfile, ident.keyfile, None)
    none = build_server_ssl_context(ident.certfile, ident.keyfile, client_certs="none")
    assert none.verify_mode == ssl.CERT_NONE


def _s_client(port: int, cafile: Path, flag: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "s_client",
            flag,
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(cafile),
            "-verify_return_error",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")
def test_openssl_s_client_tls12_refused_tls13_accepted(server: ServerThread, pki: Pki) -> None:
    refused = _s_client(server.port, pki.identity.cafile, "-tls1_2")
    assert refused.returncode != 0
    assert "Cipher is (NONE)" in refused.stdout or "alert" in refused.stderr
    accepted = _s_client(server.port, pki.identity.cafile, "-tls1_3")
    assert accepted.returncode == 0, accepted.stderr
    assert "TLSv1.3" in accepted.stdout
    assert "Verify return code: 0 (ok)" in accepted.stdout


def test_server_certificate_chains_to_ca_with_sans(server: ServerThread, pki: Pki) -> None:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        _trusting_ctx(pki).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    cert.verify_directly_issued_by(pki.ca.certificate)
    assert cert.issuer.rfc4514_string() == "CN=Secretum Internal CA,O=Secretum"
    assert certificate_names(cert) == {"localhost", "127.0.0.1", "::1"}
    verify_server_certificate(cert, pki.ca.certificate, NAMES, datetime.now(UTC))


def test_client_not_trusting_the_ca_fails_verification(server: ServerThread, pki: Pki) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(ssl.create_default_context(), server.port, "/healthz")  # system roots only
    other = ssl.create_default_context(cadata=certificate_to_pem(pki.other_ca.certificate).decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(other, server.port, "/healthz")
    with pytest.raises(ssl.SSLCertVerificationError):  # right CA, wrong host name
        _get(_trusting_ctx(pki), server.port, "/healthz", host="example.org")


def test_no_client_certificate_is_allowed_in_optional_mode(server: ServerThread, pki: Pki) -> None:
    status, body, _ = _get(_trusting_ctx(pki), server.port, "/whoami")
    assert status == 200
    assert json.loads(body) == {"client": None, "tls": 0x0304}


def test_client_certificate_from_internal_ca_is_accepted(server: ServerThread, pki: Pki) -> None:
    certfile, keyfile = _client_files(pki, pki.ca, "device-0042")
    ctx = _trusting_ctx(pki)
    ctx.load_cert_chain(certfile, keyfile)
    status, body, _ = _get(ctx, server.port, "/whoami")
    assert status == 200
    assert json.loads(body) == {"client": "device-0042", "tls": 0x0304}


@pytest.mark.parametrize("case", ["other_ca", "server_eku"])
def test_bad_client_certificate_is_rejected(server: ServerThread, pki: Pki, case: str) -> None:
    if case == "other_ca":
        certfile, keyfile = _client_files(pki, pki.other_ca, "intruder-1")
    else:
        certfile, keyfile = _client_files(pki, pki.ca, "not-a-client", server=True)
    ctx = _trusting_ctx(pki)
    ctx.load_cert_chain(certfile, keyfile)
    # TLS 1.3: the client finishes its side before the server judges its certificate, so the
    # failure (an alert) surfaces on the first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(ctx, server.port, "/whoami")


def test_required_mode_refuses_clients_without_certificate(pki: Pki) -> None:
    ident = pki.identity
    app = create_app()
    with ServerThread(
        app,
        certfile=ident.certfile,
        keyfile=ident.keyfile,
        cafile=ident.cafile,
        client_certs="required",
    ) as strict:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(_trusting_ctx(pki), strict.port, "/healthz")
        certfile, keyfile = _client_files(pki, pki.ca, "service-audit")
        ctx = _trusting_ctx(pki)
        ctx.load_cert_chain(certfile, keyfile)
        assert _get(ctx, strict.port, "/healthz")[0] == 200


def test_security_headers_over_real_tls_on_404(server: ServerThread, pki: Pki) -> None:
    response = httpx.get(f"{server.url}/no/such/page", verify=_trusting_ctx(pki))
    assert response.status_code == 404
    assert response.headers["x-frame-options"] == "DENY"
    assert "server" not in response.headers  # no "server: uvicorn"
