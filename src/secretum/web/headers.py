"""Security headers on every HTTP response, errors and 404s included.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``) that rewrites the
``http.response.start`` message. :func:`secretum.web.app.create_app` installs it *outside*
Starlette's ``ServerErrorMiddleware``, so the 500 page produced for an unhandled exception goes
through it too; user middleware added with ``add_middleware`` would sit inside and miss it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: No inline script, no plug-ins, no framing, forms only to ourselves.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
#: Camera and microphone stay available to our own pages (teleconsultation); nothing else.
PERMISSIONS_POLICY = "camera=(self), microphone=(self), geolocation=()"
#: Two years, all sub-domains. No ``preload``: internal host names are not for the public list.
STRICT_TRANSPORT_SECURITY = "max-age=63072000; includeSubDomains"

SECURITY_HEADERS: Mapping[str, str] = {
    "Strict-Transport-Security": STRICT_TRANSPORT_SECURITY,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
}
#: Set only when the response did not choose its own caching (e.g. future static assets).
DEFAULT_HEADERS: Mapping[str, str] = {"Cache-Control": "no-store"}


class SecurityHeadersMiddleware:
    """Add :data:`SECURITY_HEADERS` (overriding) and :data:`DEFAULT_HEADERS` (if absent)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: Mapping[str, str] = SECURITY_HEADERS,
        defaults: Mapping[str, str] = DEFAULT_HEADERS,
    ) -> None:
        self.app = app
        self.headers = dict(headers)
        self.defaults = dict(defaults)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
                for name, value in self.defaults.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
