"""The teleconsultation call: its page, its signaling WebSocket, the TURN credentials.

* ``GET /consult/turn-credentials`` — ``{"iceServers": [...], "ttl": N}``: short-lived TURN
  REST credentials for the signed-in patient or practitioner (``[]`` without TURN).
* ``GET /consult/{appointment_id}`` — the call page (``consult_call.html``): one use case
  (:meth:`ConsultService.page`, audited), refusals as pages.
* ``POST /consult/{appointment_id}/documents`` — a file shared in the call, decrypted in the
  practitioner's browser, saved into the patient's record (multipart ``file``, the CSRF token
  in ``X-CSRF-Token``): :meth:`ConsultService.save_shared_file` (the appointment's
  practitioner only; the document service's streaming encryption, policy and audit). Answers
  ``{"document_id": ...}`` (201) or the refusal's status (403, 413, 415...).
* ``WS /consult/{appointment_id}/ws`` — signaling (docs/call-protocol.md): the
  ``__Host-`` session cookie (4401 without a live one), the ``Origin`` among the configured
  origins (4403), the join decision (:meth:`ConsultService.join`: one decision, one audit
  entry; 4403 when refused), then :meth:`Calls.serve` until the socket closes.

The socket is accepted before a refusal so that the browser sees the close code (a refusal
before the handshake reaches the page as a bare 1006); nothing is sent before the close.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.websockets import WebSocketDisconnect, WebSocketState

from secretum.access.context import RequestContext
from secretum.access.errors import Refused
from secretum.access.model import Purpose, Role
from secretum.consult.service import PURPOSE
from secretum.consult.signaling import REFUSED, UNAUTHENTICATED
from secretum.logs import get_logger
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.routes.practice import upload_limit
from secretum.web.templating import render

_log = get_logger(__name__)

router = APIRouter(prefix="/consult", route_class=pages.CarePageRoute, include_in_schema=False)

CallerInCall = Annotated[Caller, Depends(deps.role(Role.PATIENT, Role.PRACTITIONER))]
Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]


@router.get("/turn-credentials")
async def turn_credentials(caller: CallerInCall, svc: Svc) -> JSONResponse:
    """The ``iceServers`` of the caller's calls (valid for the TURN TTL)."""
    calls = svc.calls
    ttl = calls.turn.ttl_seconds if calls.turn is not None else 0
    body = {"iceServers": calls.ice_servers(caller.user_id), "ttl": ttl}
    return JSONResponse(body, headers={"cache-control": "no-store"})


def _ws_url(request: Request, appointment_id: str) -> str:
    host = request.headers.get("host") or request.url.netloc
    return f"wss://{host}/consult/{appointment_id}/ws"


@router.get("/{appointment_id}", response_class=HTMLResponse)
def call_page(
    appointment_id: str, caller: CallerInCall, request: Request, svc: Svc, now: Now
) -> HTMLResponse:
    """The call page of the caller's appointment (its patient or practitioner)."""
    admission = svc.consult.page(caller.context(Purpose.TELECONSULTATION, now), appointment_id)
    settings = svc.consult.settings
    return render(
        request,
        "consult_call.html",
        appointment_id=admission.appointment_id,
        role=str(admission.role),
        ws_url=_ws_url(request, admission.appointment_id),
        other_name=admission.other_name,
        slot_start=admission.start,
        slot_end=admission.end,
        waiting_room_minutes=int(settings.waiting_room.total_seconds() // 60),
        window_open=admission.window_open,
    )


@router.post("/{appointment_id}/documents")
async def save_shared_file(
    appointment_id: str,
    _limit: Annotated[None, Depends(upload_limit)],
    caller: CallerInCall,
    request: Request,
    svc: Svc,
    now: Now,
) -> JSONResponse:
    """Save a file shared in the call into the patient's record (the practitioner)."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise pages.PageError(400, "error.document_form")
    document_id = await run_in_threadpool(
        svc.consult.save_shared_file,
        caller.context(PURPOSE, now),
        appointment_id,
        str(form.get("name") or upload.filename or ""),
        upload.file,
        upload.content_type or "",
    )
    return JSONResponse(
        {"document_id": document_id}, status_code=201, headers={"cache-control": "no-store"}
    )


def allowed_origins(request: WebSocket) -> frozenset[str]:
    """The public URL and the extra origins (scheme://host[:port], lower case)."""
    settings = request.app.state.settings
    if settings is None:
        return frozenset()
    return frozenset(o.rstrip("/").lower() for o in (settings.base_url, *settings.extra_origins))


class _Socket:
    """A Starlette WebSocket as a :class:`~secretum.consult.signaling.Peer`."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state is WebSocketState.CONNECTED:
            await self.ws.close(code, reason)


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.accept()
    await websocket.close(code, reason)


@router.websocket("/{appointment_id}/ws")
async def signaling(websocket: WebSocket, appointment_id: str) -> None:
    platform = deps.platform(websocket)  # type: ignore[arg-type]
    svc = platform.services
    now = platform.clock()
    host = deps.valid_address(websocket.client.host if websocket.client else None)
    session_id = websocket.cookies.get(deps.SESSION_COOKIE) or ""
    resolve = svc.identity.sessions.resolve
    session = await run_in_threadpool(resolve, session_id, now=now) if session_id else None
    if session is None or session.enrolment_only:
        await run_in_threadpool(
            svc.consult.refuse_socket, None, appointment_id, "deny.no-session", now, host
        )
        await _refuse(websocket, UNAUTHENTICATED, "session")
        return
    actor = session.to_actor()
    origin = (websocket.headers.get("origin") or "").rstrip("/").lower()
    if origin not in allowed_origins(websocket):
        await run_in_threadpool(
            svc.consult.refuse_socket, actor, appointment_id, "deny.bad-origin", now, host
        )
        await _refuse(websocket, REFUSED, "origin")
        return
    ctx = RequestContext(actor, PURPOSE, now, host)
    try:
        admission = await run_in_threadpool(svc.consult.join, ctx, appointment_id)
    except Refused:
        await _refuse(websocket, REFUSED, "refused")
        return

    async def session_alive() -> bool:
        live = await run_in_threadpool(resolve, session_id, now=platform.clock())
        return live is not None

    await websocket.accept()
    await svc.calls.serve(_Socket(websocket), admission, ctx, session_alive=session_alive)
