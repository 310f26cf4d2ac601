"""Our request log, replacing uvicorn's access log.

One JSON line per request, event ``http.request``: ``method``, ``route`` (the matched route
*template*, e.g. ``/patients/{patient_id}``, or ``null`` when nothing matched), ``status``,
``duration_ms`` and ``request_id``. Never the raw path (it can carry a patient id or name), the
query string, headers (``Authorization``, ``Cookie``), the body or the client address.

The request id is generated here (an incoming ``X-Request-ID`` is not trusted: it is client
data), bound to structlog's context variables for every log line written while the request
runs, and returned in the ``X-Request-ID`` response header.

An unhandled exception is logged *once*, on the request line (level ``error`` with
``exc_type``/``exc_stack``, no message: see :mod:`secretum.logs`), then swallowed: Starlette has
already sent the 500, and re-raising would make uvicorn log it a second time. If no response
was started, a plain 500 is sent.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretum.logs import get_logger

REQUEST_ID_HEADER = "X-Request-ID"
_log = get_logger("secretum.web.request")


def route_template(scope: Scope) -> str | None:
    """The template of the route that handled ``scope`` (set by Starlette's router), if any."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


class RequestLogMiddleware:
    """Write one redaction-safe ``http.request`` line per HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Callable[[], float] = time.perf_counter,
        new_request_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.app = app
        self.clock = clock
        self.new_request_id = new_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.new_request_id()
        started = self.clock()
        status: int | None = None

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_logged)
            except Exception as exc:
                if status is None:
                    with contextlib.suppress(Exception):  # client may be gone
                        await _send_500(send_logged)
                self._write(scope, status, started, exc)
                return
            self._write(scope, status, started, None)

    def _write(
        self, scope: Scope, status: int | None, started: float, exc: BaseException | None
    ) -> None:
        fields = {
            "method": scope.get("method"),
            "route": route_template(scope),
            "status": status,
            "duration_ms": round((self.clock() - started) * 1000, 3),
        }
        if exc is not None:
            _log.error("http.request", exc_info=exc, **fields)
        elif status is not None and status >= 500:
            _log.error("http.request", **fields)
        else:
            _log.info("http.request", **fields)


async def _send_500(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Internal Server Error"})
