"""PEM/DER serialisation and safe file writing for certificates and keys.

Private keys that must live in a file (the TLS server key: OpenSSL loads it by path) are
written by :func:`write_private_key_pem`: created with mode 0600 in the target directory under
a temporary name, flushed to disk, then renamed over the target, so no reader ever sees a
partial key or a key with looser permissions. The CA key is *not* meant to be written here:
:func:`private_key_to_der` gives the bytes the caller wraps with the KMS.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from secretum.pki.ca import PKIError


def certificate_to_pem(cert: x509.Certificate) -> bytes:
    """One certificate as PEM bytes."""
    return cert.public_bytes(serialization.Encoding.PEM)


def certificates_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """A chain (leaf first) as concatenated PEM bytes."""
    return b"".join(certificate_to_pem(c) for c in certs)


def certificate_from_pem(data: bytes) -> x509.Certificate:
    """The first certificate in ``data``."""
    return x509.load_pem_x509_certificate(data)


def certificates_from_pem(data: bytes) -> list[x509.Certificate]:
    """Every certificate in ``data``, in order."""
    return x509.load_pem_x509_certificates(data)


def private_key_to_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_to_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER: the bytes to hand to the KMS for wrapping (CA key)."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load an EC private key from PEM."""
    return _ec(serialization.load_pem_private_key(data, password=password))


def private_key_from_der(data: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an EC private key from unencrypted PKCS#8 DER (an unwrapped CA key)."""
    return _ec(serialization.load_der_private_key(data, password=None))


def write_private_key_pem(
    path: str | os.PathLike[str],
    key: ec.EllipticCurvePrivateKey,
    password: bytes | None = None,
) -> Path:
    """Write ``key`` as PKCS#8 PEM to ``path`` atomically, with mode 0600 from creation on."""
    return atomic_write(path, private_key_to_pem(key, password), mode=0o600)


def write_certificates_pem(path: str | os.PathLike[str], certs: Iterable[x509.Certificate]) -> Path:
    """Write a certificate chain (leaf first) atomically, mode 0644 (certificates are public)."""
    return atomic_write(path, certificates_to_pem(certs), mode=0o644)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int) -> Path:
    """Write ``data`` to ``path`` via a same-directory temporary file and ``os.replace``.

    A missing parent directory is created with mode 0700. The temporary file is created by
    :func:`tempfile.mkstemp` (mode 0600, ``O_EXCL``), set to ``mode`` with ``fchmod`` before any
    byte is written, fsynced, then renamed; the directory is fsynced so the rename survives a
    crash.
    """
    target = Path(path)
    directory = target.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _ec(key: object) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError("expected an ECDSA private key")
    return key
