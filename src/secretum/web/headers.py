"""Security headers on every HTTP response, errors and 404s included.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``) that rewrites the
``http.response.start`` message. :func:`secretum.web.app.create_app` installs it *outside*
Starlette's ``ServerErrorMiddleware``, so the 500 page produced for an unhandled exception goes
through it too; user middleware added with ``add_middleware`` would sit inside and miss it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
        # Encoded once: every response gets them by one pass over its raw header list.
        self._set = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._set_names = frozenset(name for name, _ in self._set)
        self._default = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in defaults.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._with_headers(message.get("headers") or [])
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _with_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The response's headers, ours overriding theirs, defaults where they set none."""
        kept = [(name, value) for name, value in raw if name.lower() not in self._set_names]
        present = {name.lower() for name, _ in kept}
        kept.extend(self._set)
        kept.extend(item for item in self._default if item[0] not in present)
        return kept
