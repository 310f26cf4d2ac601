"""The server's TLS identity on disk: reuse it while it is good, re-issue it when it is not.

Layout of ``pki_dir`` (mode 0700)::

    ca.pem        the internal root CA certificate (trust store for clients and for mTLS)
    server.pem    the server certificate (leaf only: clients already hold the root)
    server.key    its private key, PKCS#8 PEM, mode 0600

The CA private key is never read from or written to this directory. It is *injected*: the
caller passes ``unlock_ca``, a function that returns the :class:`CertificateAuthority` (for
instance by unwrapping the key held in the key vault), and it is called only when a new server
certificate must be issued.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from secretum.pki.ca import SERVER_VALIDITY, CertificateAuthority, PKIError, generate_leaf_key
from secretum.pki.ca import issue_server_certificate as _issue
from secretum.pki.pem import (
    certificate_from_pem,
    private_key_from_pem,
    write_certificates_pem,
    write_private_key_pem,
)
from secretum.pki.verify import (
    CertificateRejected,
    certificate_names,
    normalise_names,
    verify_server_certificate,
)

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
#: Re-issue the server certificate when it has less than this left.
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class ServerIdentity:
    """What :func:`secretum.web.server.serve` needs: ``certfile``, ``keyfile``, ``cafile``."""

    certfile: Path
    keyfile: Path
    cafile: Path
    certificate: x509.Certificate
    #: ``True`` when this call issued a new certificate.
    issued: bool


def load_or_create_server_identity(
    pki_dir: str | os.PathLike[str],
    *,
    ca_certificate: x509.Certificate,
    unlock_ca: Callable[[], CertificateAuthority],
    names: Sequence[str],
    now: datetime,
    validity: timedelta = SERVER_VALIDITY,
    renew_before: timedelta = RENEW_BEFORE,
) -> ServerIdentity:
    """Return the server identity in ``pki_dir``, issuing a new key and certificate if needed.

    The existing certificate is reused when its key file matches it, it validates against
    ``ca_certificate`` at ``now`` for every one of ``names`` (and has exactly those names), and
    it is still valid at ``now + renew_before``, and the key file is not readable by group or
    others. Otherwise a fresh P-256 key is generated and
    ``unlock_ca()`` is called to sign a new certificate. ``ca.pem`` is always (re)written.
    """
    directory = Path(pki_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    certfile = directory / SERVER_CERT_FILE
    keyfile = directory / SERVER_KEY_FILE
    cafile = write_certificates_pem(directory / CA_FILE, [ca_certificate])

    current = _reusable(certfile, keyfile, ca_certificate, names, now, renew_before)
    if current is not None:
        return ServerIdentity(certfile, keyfile, cafile, current, issued=False)

    ca = unlock_ca()
    if ca.certificate != ca_certificate:
        raise PKIError("unlock_ca returned a different CA than ca_certificate")
    key = generate_leaf_key()
    cert = _issue(ca, names, key.public_key(), now, validity=validity)
    # Key first: a crash in between leaves a new key with the old certificate, which the next
    # start detects (mismatch) and repairs.
    write_private_key_pem(keyfile, key)
    write_certificates_pem(certfile, [cert])
    return ServerIdentity(certfile, keyfile, cafile, cert, issued=True)


def _reusable(
    certfile: Path,
    keyfile: Path,
    ca_certificate: x509.Certificate,
    names: Sequence[str],
    now: datetime,
    renew_before: timedelta,
) -> x509.Certificate | None:
    try:
        if keyfile.stat().st_mode & 0o077:
            return None  # readable by others: treat as exposed, issue a new key
        cert = certificate_from_pem(certfile.read_bytes())
        key = private_key_from_pem(keyfile.read_bytes())
    except (OSError, ValueError):
        return None
    if cert.public_key() != key.public_key():
        return None
    if certificate_names(cert) != normalise_names(names):
        return None
    if cert.not_valid_after_utc - now < renew_before:
        return None
    try:
        verify_server_certificate(cert, ca_certificate, names, now)
    except CertificateRejected:
        return None
    return cert
