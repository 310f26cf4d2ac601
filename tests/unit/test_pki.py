"""Internal CA: certificate profiles, validation, PEM helpers, key files, server identity."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secretum.pki import (
    CA_COMMON_NAME,
    CertificateAuthority,
    CertificateRejected,
    PKIError,
    certificate_from_pem,
    certificate_names,
    certificate_to_pem,
    certificates_from_pem,
    certificates_to_pem,
    common_name,
    create_root_ca,
    generate_leaf_key,
    issue_client_certificate,
    issue_client_certificate_from_csr,
    issue_server_certificate,
    load_or_create_server_identity,
    private_key_from_der,
    private_key_from_pem,
    private_key_to_der,
    private_key_to_pem,
    verify_client_certificate,
    verify_server_certificate,
    write_certificates_pem,
    write_private_key_pem,
)
from secretum.pki.ca import CLOCK_SKEW

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ["localhost", "127.0.0.1", "::1"]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_root_ca(NOW)


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return create_root_ca(NOW, common_name="Someone Else CA")


def _ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


# --- root CA profile -------------------------------------------------------------------------


def test_root_ca_profile(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    assert common_name(cert) == CA_COMMON_NAME == "Secretum Internal CA"
    assert cert.issuer == cert.subject
    assert isinstance(ca.private_key.curve, ec.SECP384R1)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(cert)  # self-signature
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)


def test_ca_key_is_injectable_and_checked() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = create_root_ca(NOW, key=key, validity=timedelta(days=30))
    assert ca.private_key is key
    assert ca.certificate.not_valid_after_utc == NOW + timedelta(days=30)
    with pytest.raises(PKIError):
        CertificateAuthority(certificate=ca.certificate, private_key=generate_leaf_key())
    assert "PRIVATE" not in repr(ca) and "private_key" not in repr(ca)


def test_time_must_be_aware_and_keys_must_be_p256_or_p384() -> None:
    with pytest.raises(PKIError):
        create_root_ca(datetime(2025, 1, 1))
    with pytest.raises(PKIError):
        create_root_ca(NOW, key=ec.generate_private_key(ec.SECP521R1()))


# --- server certificates ---------------------------------------------------------------------


def test_server_certificate_profile(ca: CertificateAuthority) -> None:
    key = generate_leaf_key()
    cert = issue_server_certificate(ca, NAMES, key.public_key(), NOW)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.issuer == ca.certificate.subject
    assert certificate_names(cert) == {"localhost", "127.0.0.1", "::1"}
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    assert _ext(cert, x509.KeyUsage).value.digital_signature
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert cert.not_valid_after_utc - NOW == timedelta(days=90)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    verify_server_certificate(cert, ca.certificate, NAMES, NOW)


def test_server_certificate_validity_is_configurable(ca: CertificateAuthority) -> None:
    cert = issue_server_certificate(
        ca, ["localhost"], generate_leaf_key().public_key(), NOW, validity=timedelta(days=7)
    )
    assert cert.not_valid_after_utc == NOW + timedelta(days=7)
    with pytest.raises(PKIError):
        issue_server_certificate(
            ca, ["localhost"], generate_leaf_key().public_key(), NOW, validity=timedelta(0)
        )
    with pytest.raises(PKIError):  # may not outlive the CA
        issue_server_certificate(
            ca, ["localhost"], generate_leaf_key().public_key(), NOW, validity=timedelta(days=4000)
        )


@pytest.mark.parametrize("bad", [[], ["bad name"], ["exa_mple/..;"]])
def test_server_names_are_checked(ca: CertificateAuthority, bad: list[str]) -> None:
    with pytest.raises(PKIError):
        issue_server_certificate(ca, bad, generate_leaf_key().public_key(), NOW)


def test_server_verification_rejects_wrong_name_time_and_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    cert = issue_server_certificate(ca, NAMES, generate_leaf_key().public_key(), NOW)
    with pytest.raises(CertificateRejected):
        verify_server_certificate(cert, ca.certificate, ["example.org"], NOW)
    with pytest.raises(CertificateRejected):
        verify_server_certificate(cert, ca.certificate, NAMES, NOW + timedelta(days=91))
    with pytest.raises(CertificateRejected):
        verify_server_certificate(cert, other_ca.certificate, NAMES, NOW)


# --- client certificates ---------------------------------------------------------------------


def test_client_certificate_profile(ca: CertificateAuthority) -> None:
    cert = issue_client_certificate(ca, "device-0042", generate_leaf_key().public_key(), NOW)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "device-0042"
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert verify_client_certificate(cert, ca.certificate, NOW) == "device-0042"


def test_client_verification_rejects_server_cert_and_other_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    server = issue_server_certificate(ca, NAMES, generate_leaf_key().public_key(), NOW)
    with pytest.raises(CertificateRejected):  # no clientAuth EKU
        verify_client_certificate(server, ca.certificate, NOW)
    foreign = issue_client_certificate(other_ca, "device-1", generate_leaf_key().public_key(), NOW)
    with pytest.raises(CertificateRejected):
        verify_client_certificate(foreign, ca.certificate, NOW)
    client = issue_client_certificate(ca, "device-1", generate_leaf_key().public_key(), NOW)
    with pytest.raises(CertificateRejected):  # a client cert is no server cert
        verify_server_certificate(client, ca.certificate, ["localhost"], NOW)


@pytest.mark.parametrize(
    "subject_id", ["", "jeanne.dupont@example.fr", "Jeanne Dupont", "é-device", "-x", "a" * 65]
)
def test_client_subject_id_is_opaque(ca: CertificateAuthority, subject_id: str) -> None:
    with pytest.raises(PKIError):
        issue_client_certificate(ca, subject_id, generate_leaf_key().public_key(), NOW)


def test_client_certificate_from_csr_uses_only_the_key(ca: CertificateAuthority) -> None:
    device_key = generate_leaf_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(device_key, hashes.SHA256())
    )
    cert = issue_client_certificate_from_csr(ca, csr, "sensor-7", NOW)
    assert common_name(cert) == "sensor-7"
    assert cert.public_key() == device_key.public_key()
    assert _ext(cert, x509.BasicConstraints).value.ca is False


# --- serialisation and key files -------------------------------------------------------------


def test_pem_and_der_round_trips(ca: CertificateAuthority) -> None:
    pem = certificate_to_pem(ca.certificate)
    assert certificate_from_pem(pem) == ca.certificate
    leaf = issue_server_certificate(ca, ["localhost"], generate_leaf_key().public_key(), NOW)
    assert certificates_from_pem(certificates_to_pem([leaf, ca.certificate])) == [
        leaf,
        ca.certificate,
    ]
    der = private_key_to_der(ca.private_key)
    assert private_key_from_der(der).private_numbers() == ca.private_key.private_numbers()
    encrypted = private_key_to_pem(ca.private_key, b"correct horse")
    assert b"ENCRYPTED" in encrypted
    restored = private_key_from_pem(encrypted, b"correct horse")
    assert restored.private_numbers() == ca.private_key.private_numbers()


def test_write_private_key_is_0600_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_text("old, world-readable")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        key = generate_leaf_key()
        write_private_key_pem(path, key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert private_key_from_pem(path.read_bytes()).private_numbers() == key.private_numbers()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.key"]  # no temp file left


def test_writers_create_a_private_parent_directory(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    target = tmp_path / "new" / "pki" / "ca.pem"
    write_certificates_pem(target, [ca.certificate])
    assert certificate_from_pem(target.read_bytes()) == ca.certificate
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


# --- server identity on disk -----------------------------------------------------------------


def _never() -> CertificateAuthority:
    raise AssertionError("the CA key must not be unlocked when the certificate is reusable")


def test_server_identity_issue_then_reuse(tmp_path: Path, ca: CertificateAuthority) -> None:
    calls: list[int] = []

    def unlock() -> CertificateAuthority:
        calls.append(1)
        return ca

    pki = tmp_path / "pki"
    first = load_or_create_server_identity(
        pki, ca_certificate=ca.certificate, unlock_ca=unlock, names=NAMES, now=NOW
    )
    assert first.issued and calls == [1]
    assert stat.S_IMODE(first.keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    assert certificate_from_pem(first.cafile.read_bytes()) == ca.certificate
    assert certificate_from_pem(first.certfile.read_bytes()) == first.certificate
    assert not any("ca" in p.name and p.suffix == ".key" for p in pki.iterdir())

    again = load_or_create_server_identity(
        pki,
        ca_certificate=ca.certificate,
        unlock_ca=_never,
        names=["::1", "LOCALHOST", "127.0.0.1"],
        now=NOW + timedelta(days=10),
    )
    assert not again.issued and again.certificate == first.certificate


@pytest.mark.parametrize("change", ["near_expiry", "names", "key_mode", "corrupt", "other_ca"])
def test_server_identity_is_reissued_when_not_good(
    tmp_path: Path, ca: CertificateAuthority, other_ca: CertificateAuthority, change: str
) -> None:
    pki = tmp_path / "pki"
    first = load_or_create_server_identity(
        pki, ca_certificate=ca.certificate, unlock_ca=lambda: ca, names=NAMES, now=NOW
    )
    now, names, issuer = NOW, NAMES, ca
    if change == "near_expiry":
        now = NOW + timedelta(days=61)  # fewer than 30 days left
    elif change == "names":
        names = [*NAMES, "secretum.example"]
    elif change == "key_mode":
        first.keyfile.chmod(0o644)
    elif change == "corrupt":
        first.certfile.write_bytes(b"not a certificate")
    else:
        issuer = other_ca
    second = load_or_create_server_identity(
        pki, ca_certificate=issuer.certificate, unlock_ca=lambda: issuer, names=names, now=now
    )
    assert second.issued
    assert second.certificate != first.certificate
    verify_server_certificate(second.certificate, issuer.certificate, names, now)
    assert stat.S_IMODE(second.keyfile.stat().st_mode) == 0o600


def test_unlock_must_return_the_same_ca(
    tmp_path: Path, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    with pytest.raises(PKIError):
        load_or_create_server_identity(
            tmp_path,
            ca_certificate=ca.certificate,
            unlock_ca=lambda: other_ca,
            names=NAMES,
            now=NOW,
        )
