"""The web layer: FastAPI app factory, security headers, request log, TLS 1.3 serving.

Thin by design: parse the request, identify the caller, call one service, render a schema.
No domain logic lives here; the domain packages never import this one.
"""

from secretum.web.app import create_app
from secretum.web.server import ServerThread, serve
from secretum.web.tls import build_server_ssl_context, client_certificate_id

__all__ = [
    "ServerThread",
    "build_server_ssl_context",
    "client_certificate_id",
    "create_app",
    "serve",
]
