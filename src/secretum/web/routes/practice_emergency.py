"""Break-the-glass (``/practice/break-glass``): emergency read access to a patient outside my
care team, after a fresh second factor and with a written reason, for one hour.

The patient is notified, the DPO reviews it, every read under it is audited with purpose
ETREAT (all of it in :class:`~secretum.policy.breakglass.BreakGlassService` and the record
services). The page lists my active grants and their end; I may stop one early.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from secretum.access.model import Purpose
from secretum.audit.model import ID_PATTERN
from secretum.policy.breakglass import MAX_REASON_CHARS
from secretum.records.directory import emergency_lookup
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.i18n import translate
from secretum.web.routes.practice import PractitionerCaller
from secretum.web.templating import language, render

router = APIRouter(prefix="/practice", route_class=pages.CarePageRoute, include_in_schema=False)

Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]
PAGE = "/practice/break-glass"
DONE = frozenset({"declared", "stopped", "closed"})


def emergency_page(
    request: Request,
    caller_id: str,
    svc: Services,
    now: datetime,
    *,
    error: str | None = None,
    status: int = 200,
    done: str = "",
    patient_id: str = "",
) -> HTMLResponse:
    lang = language(request)
    messages: list[tuple[str, str]] = []
    if done in DONE:
        messages.append(("success", translate(lang, f"done.{done}")))
    if error:
        messages.append(("error", translate(lang, error)))
    return render(
        request,
        "practice_break_glass.html",
        status_code=status,
        grants=svc.care_reads.grants_held(caller_id, now),
        max_reason=MAX_REASON_CHARS,
        minutes=int(svc.break_glass.duration.total_seconds() // 60),
        patient_id=patient_id,
        **pages.ctx(request),
        flashes=messages,
    )


@router.get("/break-glass", response_class=HTMLResponse)
def break_glass(
    caller: PractitionerCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """The declaration form and my active grants (until when)."""
    return emergency_page(request, caller.user_id, svc, now, done=done)


@router.post("/break-glass", response_class=HTMLResponse, **pages.back_to(PAGE))
def declare(
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    patient_id: FormStr = "",
    ins: FormStr = "",
    reason: FormStr = "",
) -> Response:
    """Declare an emergency on a patient, found by INS (exact, through the blind index, after
    the step-up) or by id: read access for the grant's duration. No search by name: see
    :mod:`secretum.records.directory`."""
    patient_id = patient_id.strip()
    if ins.strip() and not patient_id:
        with pages.step_up_then(PAGE):
            found = emergency_lookup(svc.records, caller.context(Purpose.EMERGENCY, now), ins)
        if found is None:
            return emergency_page(
                request, caller.user_id, svc, now, error="error.unknown_ins", status=404
            )
        patient_id = found
    if not ID_PATTERN.fullmatch(patient_id) or not svc.directory.is_patient(patient_id):
        return emergency_page(
            request, caller.user_id, svc, now, error="error.unknown_patient", status=404
        )
    if not reason.strip() or len(reason) > MAX_REASON_CHARS:
        return emergency_page(
            request,
            caller.user_id,
            svc,
            now,
            error="error.reason",
            status=400,
            patient_id=patient_id,
        )
    svc.break_glass.declare(caller.context(Purpose.EMERGENCY, now), patient_id, reason)
    return pages.done(f"/practice/patients/{patient_id}?purpose=emergency", "declared")


@router.post("/break-glass/{grant_id}/stop", **pages.back_to(PAGE))
def stop(grant_id: str, caller: PractitionerCaller, svc: Svc, now: Now) -> RedirectResponse:
    """End one of my grants now (audited: Emergency Override Stopped)."""
    try:
        stopped = svc.break_glass.stop(caller.context(Purpose.EMERGENCY, now), grant_id)
    except PermissionError:  # someone else's grant: as if it did not exist
        raise pages.PageError(404, "error.not_found") from None
    return pages.done(PAGE, "stopped" if stopped else "closed")
