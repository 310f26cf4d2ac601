"""Errors raised by :mod:`secretum.crypto`.

Messages never contain key material, plaintext or ciphertext: only identifiers that are
safe to log (key ids, versions, record ids).
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by the cryptography layer."""


class IntegrityError(CryptoError):
    """A ciphertext, a wrapped key or a tag did not authenticate.

    Raised for tampered bytes, a wrong key or a wrong context (associated data). Data that
    fails authentication is never returned, not even in part.
    """


class FormatError(IntegrityError):
    """The bytes are not in a format this version of Secretum can read."""


class KeyNotFoundError(CryptoError):
    """No key with that id or version is available."""


class KeyShreddedError(KeyNotFoundError):
    """The key was destroyed on purpose (crypto-shredding): the data is gone for good."""


class KeyRetiredError(KeyNotFoundError):
    """The key-encryption key version is below the minimum decryption version."""
