"""Device cookies: brute-force lock-out that an attacker cannot turn against the real user.

Counting failed sign-ins per account alone lets anyone lock anyone out: ten wrong passwords
typed from anywhere lock the account for 15 minutes; counting per address alone throttles
everyone behind a shared NAT. This module implements the scheme OWASP recommends
("Slow Down Online Guessing Attacks with Device Cookies"): after a *successful* sign-in
the browser receives a device cookie for that account, and later attempts are counted

* against that device only, when the browser presents a valid, unexpired device cookie of the
  account being signed in to (key ``dev:<hash of the token>``); once that key is locked the
  browser is treated as untrusted;
* otherwise in the account's *untrusted* bucket (``acct:<blind index>``, the key that existed
  before) and the address bucket (``addr:<ip>``), which lock only untrusted attempts.

So an attacker without a device cookie locks only the untrusted bucket; the user's own browser
keeps signing in, and its attempts neither check nor feed the address bucket.

A token is ``v1.<issued at, unix seconds>.<nonce>.<tag>`` where the tag is
``HMAC-SHA256(key, "device-cookie" || account || issued || nonce)`` (pyca/cryptography) and
``account`` is the blind index of the account's e-mail (its limiter key): the cookie carries no
identifier of the account, the server recomputes the tag for the account the attempt names. A
forged, altered, expired token, or one issued to another account, is simply not trusted. The
key is a named secret of the key ring (wrapped by the KMS); nothing about the tokens is stored.
A browser shared by several accounts keeps one token per account (at most
:data:`MAX_TOKENS`, newest first) in the same cookie, ``~``-separated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

from secretum.crypto.context import encode_fields

#: Named secret of the key ring holding the HMAC key.
DEVICE_COOKIE_KEY = "device-cookie-hmac"
KEY_SIZE = 32
NONCE_BYTES = 16
#: How long a device stays trusted after its last successful sign-in (browsers cap cookies
#: at 400 days; each success issues a fresh token).
LIFETIME = timedelta(days=400)
MAX_TOKENS = 4
MAX_COOKIE = 1024  # longer values are not parsed at all
_VERSION = "v1"
SEPARATOR = "~"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DeviceCookies:
    """Issues and checks device tokens with one secret key (see the module docstring)."""

    __slots__ = ("_key", "lifetime")

    def __init__(self, key: bytes, lifetime: timedelta = LIFETIME) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a device-cookie key is {KEY_SIZE} bytes")
        self._key = key
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return "DeviceCookies(<key hidden>)"

    def _tag(self, account_key: str, issued: int, nonce: bytes) -> HMAC:
        mac = HMAC(self._key, hashes.SHA256())
        mac.update(encode_fields("device-cookie", _VERSION, account_key, issued, nonce))
        return mac

    def issue(self, account_key: str, now: datetime, nonce: bytes) -> str:
        """A new token binding ``account_key`` (the account's limiter key) and ``nonce``."""
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a device nonce is {NONCE_BYTES} bytes")
        issued = int(now.timestamp())
        tag = self._tag(account_key, issued, nonce).finalize()
        return ".".join((_VERSION, str(issued), _b64(nonce), _b64(tag)))

    def _valid(self, token: str, account_key: str, now: datetime) -> bool:
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return False
        try:
            issued = int(parts[1])
            nonce, tag = _unb64(parts[2]), _unb64(parts[3])
        except (ValueError, binascii.Error):
            return False
        if len(nonce) != NONCE_BYTES or len(parts[1]) > 12:
            return False
        age = now.timestamp() - issued
        if age < -300 or age > self.lifetime.total_seconds():  # 5 min of clock skew allowed
            return False
        try:
            self._tag(account_key, issued, nonce).verify(tag)
        except InvalidSignature:
            return False
        return True

    @staticmethod
    def _tokens(cookie: str | None) -> list[str]:
        if not cookie or len(cookie) > MAX_COOKIE:
            return []
        return [t for t in cookie.split(SEPARATOR) if t][:MAX_TOKENS]

    def trusted_key(self, cookie: str | None, account_key: str, now: datetime) -> str | None:
        """The limiter key of the device if ``cookie`` holds a valid token of ``account_key``
        (else None: an untrusted attempt)."""
        for token in self._tokens(cookie):
            if self._valid(token, account_key, now):
                return limiter_key(token)
        return None

    def renewed(self, cookie: str | None, token: str, account_key: str, now: datetime) -> str:
        """The cookie after a successful sign-in: ``token`` first, then the other accounts'
        still valid-looking tokens (the ones of ``account_key`` are replaced)."""
        others = [t for t in self._tokens(cookie) if not self._valid(t, account_key, now)]
        kept = [t for t in others if len(t) < 128 and t.startswith(_VERSION + ".")]
        return SEPARATOR.join([token, *kept][:MAX_TOKENS])


def limiter_key(token: str) -> str:
    """The brute-force key of one device token (its SHA-256: the token itself never reaches
    the database or Redis)."""
    return "dev:" + hashlib.sha256(token.encode("ascii")).hexdigest()
