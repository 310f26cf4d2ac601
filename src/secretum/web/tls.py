"""TLS 1.3-only server context and the verified client certificate in the ASGI scope.

``build_server_ssl_context`` pins the protocol to TLS 1.3 (``minimum_version`` =
``maximum_version``), loads the server chain issued by the internal CA and, for mutual TLS,
asks for a client certificate validated against that same CA. In ``"optional"`` mode a client
may send no certificate (browsers, which log in with a session), but a certificate that does
not validate (another CA, expired, EKU without clientAuth) aborts the handshake.

Uvicorn does not put TLS details in the ASGI scope, so :class:`TLSScopeH11Protocol` (uvicorn's
h11 protocol, per connection) adds the ASGI *TLS extension*
(https://asgi.readthedocs.io/en/latest/specs/tls.html) as ``scope["extensions"]["tls"]``:
``client_cert_chain`` (PEM, leaf only: Python 3.11 has no verified-chain accessor),
``client_cert_name`` (RFC 4514), ``client_cert_error`` (always ``None``: a bad certificate
never gets this far), ``tls_version`` and ``cipher_suite``. Routes read the device/service id
with :func:`client_certificate_id`. Only the server sets this key; no header can forge it.
WebSocket connections are upgraded by uvicorn with its own app reference and do not get it.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Literal

from cryptography import x509
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from secretum.pki.ca import common_name

ClientCertMode = Literal["none", "optional", "required"]

TLS_1_3 = 0x0304
#: IANA code points of the TLS 1.3 cipher suites (RFC 8446 §B.4).
CIPHER_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_AES_128_CCM_SHA256": 0x1304,
    "TLS_AES_128_CCM_8_SHA256": 0x1305,
}
_VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def build_server_ssl_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    cafile: str | os.PathLike[str] | None = None,
    *,
    client_certs: ClientCertMode = "optional",
) -> ssl.SSLContext:
    """A server :class:`ssl.SSLContext` that speaks TLS 1.3 and nothing else.

    ``cafile`` (the internal CA) is the trust store for client certificates; it is required
    unless ``client_certs == "none"``.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(certfile, keyfile)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_certs != "none":
        if cafile is None:
            raise ValueError("client certificate verification needs the CA file")
        ctx.load_verify_locations(cafile=cafile)
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.verify_mode = _VERIFY_MODES[client_certs]
    return ctx


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI TLS extension dictionary for one established connection."""
    der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if der:
        cert = x509.load_der_x509_certificate(der)
        chain = [ssl.DER_cert_to_PEM_cert(der)]
        name = cert.subject.rfc4514_string()
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_1_3 if ssl_object.version() == "TLSv1.3" else None,
        "cipher_suite": CIPHER_SUITES.get(cipher[0]) if cipher else None,
    }


def client_certificate(scope: Scope) -> x509.Certificate | None:
    """The verified client certificate of this request's connection, if the client sent one."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode("ascii"))


def client_certificate_id(scope: Scope) -> str | None:
    """The device/service id (subject CN) of the verified client certificate, if any."""
    cert = client_certificate(scope)
    return common_name(cert) if cert is not None else None


class _WithTLSExtension:
    """Per-connection ASGI wrapper that adds ``scope["extensions"]["tls"]``."""

    def __init__(self, app: ASGIApp, info: dict[str, Any]) -> None:
        self.app = app
        self.info = info

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = self.info
            scope["extensions"] = extensions
        await self.app(scope, receive, send)


class TLSScopeH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol, adding the ASGI TLS extension to every request's scope.

    asyncio calls ``connection_made`` after the TLS handshake, so the peer certificate is
    known here, once per connection.
    """

    def connection_made(self, transport: Any) -> None:
        """Wrap this connection's app with its TLS details, then defer to uvicorn."""
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            self.app = _WithTLSExtension(self.app, tls_extension(ssl_object))
