"""Path validation of certificates issued by the internal CA (RFC 5280 §6, via pyca).

The TLS stack (OpenSSL) validates peers during the handshake; these helpers are for the other
places that hold a certificate: deciding whether an on-disk server certificate can be reused,
checking a device certificate received out of band, and tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from secretum.pki.ca import PKIError, common_name, split_names


class CertificateRejected(PKIError):
    """The certificate does not validate against the internal CA for the requested use."""


def verify_server_certificate(
    cert: x509.Certificate,
    ca_certificate: x509.Certificate,
    names: Sequence[str],
    now: datetime,
) -> None:
    """Check that ``cert`` chains to ``ca_certificate``, is valid at ``now``, has EKU
    serverAuth and covers every name in ``names``. Raises :class:`CertificateRejected`."""
    policy = PolicyBuilder().store(Store([ca_certificate])).time(now)
    dns, ips = split_names(names)
    subjects: list[DNSName | IPAddress] = [DNSName(d) for d in dns]
    subjects += [IPAddress(ip) for ip in ips]
    if not subjects:
        raise CertificateRejected("no name to verify the server certificate against")
    for subject in subjects:
        try:
            policy.build_server_verifier(subject).verify(cert, [])
        except VerificationError as exc:
            raise CertificateRejected("server certificate rejected") from exc


def verify_client_certificate(
    cert: x509.Certificate, ca_certificate: x509.Certificate, now: datetime
) -> str:
    """Check that ``cert`` chains to ``ca_certificate``, is valid at ``now`` and has EKU
    clientAuth; return its subject id (CN). Raises :class:`CertificateRejected`."""
    verifier = PolicyBuilder().store(Store([ca_certificate])).time(now).build_client_verifier()
    try:
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise CertificateRejected("client certificate rejected") from exc
    subject_id = common_name(cert)
    if not subject_id:
        raise CertificateRejected("client certificate has no subject id")
    return subject_id


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses (as strings) in ``cert``'s subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = {str(d).lower() for d in san.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return names


def normalise_names(names: Sequence[str]) -> set[str]:
    """``names`` as :func:`certificate_names` would report them (lower-case, canonical IPs)."""
    dns, ips = split_names(names)
    return set(dns) | {str(ipaddress.ip_address(ip)) for ip in ips}
