"""The audit barrier before an answer leaves: no response starts before the witness file covers
every audit entry the process has committed (see :mod:`secretum.audit.witnessing`).

An action's audit entries commit with the action; a background flusher then signs one tree
head for everything committed and ``fdatasync``-s it to the witness file. This middleware holds
the response's ``http.response.start`` until the witness covers the audit entries committed for
this request: each commit of audit entries in the request's context (its worker threads run in
a copy of it) raises the request's :class:`~secretum.audit.witnessing.Owed` size, and the
barrier waits for that size, not for entries other requests committed since (which would make
every answer under load wait one more flush). No cost when the witness already covers it. A
request that committed none waits, as a safety net, for everything the process committed up to
that moment (nothing to wait for when nothing was committed since the last flush). If
the witness cannot be written, the response becomes a bare 503: the action's data and its
"done" never leave. Installed inside the security headers and the request log, so the 503 gets
both.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretum.audit.checkpoint import WitnessError
from secretum.audit.witnessing import OWED, Owed
from secretum.logs import get_logger

_log = get_logger(__name__)

_UNAVAILABLE = b'{"error":"service unavailable"}'


class AuditBarrierMiddleware:
    """Waits for the audit witness before a response starts (module doc)."""

    def __init__(self, app: ASGIApp, owner: Any) -> None:
        self.app = app
        self._owner = owner  # the FastAPI app: its state.services (the platform) has the log

    def _audit(self) -> Any:
        services = getattr(self._owner.state, "services", None)
        audit = getattr(services, "audit", None)
        return audit if hasattr(audit, "witnessed_async") else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        audit = self._audit()
        if audit is None:
            await self.app(scope, receive, send)
            return
        refused = False
        owed = Owed()

        async def barrier_send(message: Message) -> None:
            nonlocal refused
            if refused:
                return  # the action's body never leaves
            if message["type"] == "http.response.start":
                try:
                    await audit.witnessed_async(owed.size or None)
                except WitnessError:
                    refused = True
                    _log.error("audit.witness_failed", path=scope.get("path", ""))
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(_UNAVAILABLE)).encode()),
                                (b"cache-control", b"no-store"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": _UNAVAILABLE})
                    return
            await send(message)

        token = OWED.set(owed)
        try:
            await self.app(scope, receive, barrier_send)
        finally:
            OWED.reset(token)
