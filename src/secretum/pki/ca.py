"""The internal certificate authority: one root CA, server and client certificates.

Profiles follow RFC 5280 and are small on purpose:

* **root CA** — ECDSA P-384, self-signed, ``basicConstraints`` CA:TRUE pathlen 0 (critical),
  ``keyUsage`` keyCertSign + cRLSign (critical), SKI, and AKI = its own SKI. It issues end-entity
  certificates directly; there is no intermediate.
* **server** — ECDSA P-256 key (or any EC P-256/P-384 public key handed in), ``basicConstraints``
  CA:FALSE, ``keyUsage`` digitalSignature (TLS 1.3 needs nothing else), ``extendedKeyUsage``
  serverAuth, ``subjectAltName`` with the DNS names and IP addresses given, SKI and AKI.
  Short-lived (90 days by default): renewal is automatic (:mod:`secretum.pki.identity`).
* **client** — for devices and services doing mutual TLS: same shape with ``extendedKeyUsage``
  clientAuth and the subject CN set to an *opaque* device/service id (never a person's name or
  e-mail: certificates are sent in clear in logs of proxies and captures), repeated as a
  ``subjectAltName`` URI ``urn:secretum:client:<id>``.

Time is a parameter (``now``); keys are objects: nothing here touches the disk. The CA private
key is returned to the caller, who keeps it wrapped in the key vault
(:func:`secretum.pki.pem.private_key_to_der` gives the bytes to wrap).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "Secretum Internal CA"
ORGANIZATION = "Secretum"
CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=90)
CLIENT_VALIDITY = timedelta(days=365)
#: ``notBefore`` is back-dated by this much so that a peer whose clock is slightly behind
#: still accepts a certificate issued a second ago.
CLOCK_SKEW = timedelta(minutes=5)

CLIENT_URI_PREFIX = "urn:secretum:client:"

_ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
_SUBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PKIError(ValueError):
    """A request the CA refuses (bad name, bad key, bad validity). Messages carry no secrets."""


@dataclass(frozen=True)
class CertificateAuthority:
    """The root certificate and its private key, held in memory only."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if self.certificate.public_key() != self.private_key.public_key():
            raise PKIError("the CA private key does not match the CA certificate")

    def __repr__(self) -> str:  # never print the key
        return f"CertificateAuthority(subject={self.certificate.subject.rfc4514_string()!r})"


def generate_ca_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-384 key for the root CA."""
    return ec.generate_private_key(ec.SECP384R1())


def generate_leaf_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key for a server or a client certificate."""
    return ec.generate_private_key(ec.SECP256R1())


def create_root_ca(
    now: datetime,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    validity: timedelta = CA_VALIDITY,
    common_name: str = CA_COMMON_NAME,
    serial: int | None = None,
) -> CertificateAuthority:
    """Create the self-signed root CA valid from ``now`` (minus :data:`CLOCK_SKEW`).

    ``key`` defaults to a new P-384 key. The result holds the private key: the caller wraps it
    (KMS) before it is stored anywhere.
    """
    key = key if key is not None else generate_ca_key()
    _check_key(key.public_key())
    _check_validity(now, validity)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, _hash_for(key))
    )
    return CertificateAuthority(certificate=cert, private_key=key)


def split_names(names: Sequence[str]) -> tuple[list[str], list[IPAddress]]:
    """Split host names and IP address literals (``"localhost"``, ``"127.0.0.1"``, ``"::1"``)."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    for raw in names:
        item = raw.strip()
        try:
            ips.append(ipaddress.ip_address(item.strip("[]")))
        except ValueError:
            if not item or len(item) > 253 or not re.fullmatch(r"[A-Za-z0-9*.-]+", item):
                raise PKIError("not a valid DNS name or IP address in server names") from None
            dns.append(item.lower())
    return dns, ips


def issue_server_certificate(
    ca: CertificateAuthority,
    names: Sequence[str],
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    *,
    validity: timedelta = SERVER_VALIDITY,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a TLS server certificate for ``names`` (DNS names and/or IP addresses)."""
    dns, ips = split_names(names)
    if not dns and not ips:
        raise PKIError("a server certificate needs at least one name")
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ip) for ip in ips]
    common_name = dns[0] if dns else str(ips[0])
    builder = _leaf_builder(ca, common_name, public_key, now, validity, serial)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    ).add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.private_key, _hash_for(ca.private_key))


def issue_client_certificate(
    ca: CertificateAuthority,
    subject_id: str,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    *,
    validity: timedelta = CLIENT_VALIDITY,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a TLS client certificate whose subject CN is the device/service ``subject_id``.

    ``subject_id`` is an opaque identifier: 1-64 characters of ``[A-Za-z0-9._:-]`` starting with
    a letter or digit (so no e-mail address, no space, no personal name with accents).
    """
    if not _SUBJECT_ID.fullmatch(subject_id):
        raise PKIError("client subject id must match [A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
    builder = _leaf_builder(ca, subject_id, public_key, now, validity, serial)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    ).add_extension(
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier(client_uri(subject_id))]),
        critical=False,
    )
    return builder.sign(ca.private_key, _hash_for(ca.private_key))


def issue_client_certificate_from_csr(
    ca: CertificateAuthority,
    csr: x509.CertificateSigningRequest,
    subject_id: str,
    now: datetime,
    *,
    validity: timedelta = CLIENT_VALIDITY,
) -> x509.Certificate:
    """Issue a client certificate for the key in ``csr`` (the device keeps its private key).

    Only the CSR's public key is used, after checking its self-signature; the subject and any
    requested extensions are ignored: the CA decides them (``subject_id``).
    """
    if not csr.is_signature_valid:
        raise PKIError("the certificate signing request signature is invalid")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PKIError("only ECDSA P-256/P-384 keys are accepted")
    return issue_client_certificate(ca, subject_id, public_key, now, validity=validity)


def client_uri(subject_id: str) -> str:
    """The URI put in a client certificate's subjectAltName (RFC 5280 requires a SAN
    for path validation by pyca's client verifier): ``urn:secretum:client:<subject_id>``."""
    return f"{CLIENT_URI_PREFIX}{subject_id}"


def common_name(cert: x509.Certificate) -> str | None:
    """The subject CN of ``cert`` (a client certificate's device/service id), if any."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _leaf_builder(
    ca: CertificateAuthority,
    subject_cn: str,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    validity: timedelta,
    serial: int | None,
) -> x509.CertificateBuilder:
    _check_key(public_key)
    _check_validity(now, validity)
    not_after = now + validity
    if not_after > ca.certificate.not_valid_after_utc:
        raise PKIError("the requested validity outlives the CA certificate")
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )


def _check_key(public_key: object) -> None:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, _ALLOWED_CURVES
    ):
        raise PKIError("only ECDSA P-256/P-384 keys are accepted")


def _check_validity(now: datetime, validity: timedelta) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise PKIError("now must be a timezone-aware datetime")
    if validity <= timedelta(0):
        raise PKIError("validity must be positive")


def _hash_for(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()
