"""The patient's rights (``/me/rights``, GDPR art. 15-21): export my record, erase it (within
the legal retention), restrict its processing, ask for a rectification.

Export and erasure need a fresh second factor: when the policy says so, the page sends the
patient to ``/account/step-up?next=...`` and back. Every action is one guarded, audited call to
:class:`~secretum.rights.service.RightsService`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from secretum.access.errors import Refused
from secretum.access.model import Purpose, Role
from secretum.notices.store import NoticeKind
from secretum.rights.erasure import ErasureOutcome
from secretum.rights.requests import MAX_TEXT
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.i18n import translate
from secretum.web.templating import language, render

router = APIRouter(prefix="/me", route_class=pages.CarePageRoute, include_in_schema=False)

PatientCaller = Annotated[Caller, Depends(deps.role(Role.PATIENT))]
Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]

SELF = Purpose.PATIENT_REQUEST
RIGHTS = "/me/rights"
DONE = frozenset({"restricted", "unrestricted", "rectification"})


def rights_page(
    request: Request,
    caller: Caller,
    svc: Services,
    now: datetime,
    *,
    outcome: ErasureOutcome | None = None,
    error: str | None = None,
    status: int = 200,
    done: str = "",
    ready: str = "",
) -> HTMLResponse:
    """The rights page: restriction state, erasure state (from the notices), the forms."""
    lang = language(request)
    notices = svc.notices.of(caller.user_id)
    scheduled = next((n for n in notices if n.kind is NoticeKind.ERASURE_SCHEDULED), None)
    erased = any(n.kind is NoticeKind.ERASURE_DONE for n in notices)
    messages: list[tuple[str, str]] = []
    if done in DONE:
        messages.append(("success", translate(lang, f"done.{done}")))
    if error:
        messages.append(("error", translate(lang, error)))
    try:  # what a rectification may be about: my measurements and documents (a read of mine)
        mine = svc.records.search(caller.context(SELF, now), caller.user_id)
        items = pages.record_view(mine)
    except Refused:  # erased, or not readable now: the request stays possible without it
        items = pages.record_view([])
    return render(
        request,
        "patient_rights.html",
        items=items,
        status_code=status,
        restricted=svc.care_reads.restricted(caller.user_id, now),
        scheduled_due=pages.parse_time(scheduled.params.get("due_at")) if scheduled else None,
        erased=erased,
        outcome=outcome,
        retention_years=svc.rights.erasures.retention_years,
        max_text=MAX_TEXT,
        export_ready=ready == "export",
        **pages.ctx(request),
        flashes=messages,
    )


@router.get("/rights", response_class=HTMLResponse)
def my_rights(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    done: str = "",
    ready: str = "",
) -> HTMLResponse:
    """Export, erasure, restriction, rectification: what each does, and the forms."""
    return rights_page(request, caller, svc, now, done=done, ready=ready)


@router.get("/rights/export")
def export(caller: PatientCaller, request: Request, svc: Svc, now: Now) -> StreamingResponse:
    """My whole record as a zip (FHIR Bundle + files), after a fresh second factor."""
    with pages.step_up_then(f"{RIGHTS}?ready=export"):
        result = svc.rights.export(
            caller.context(SELF, now),
            caller.user_id,
            base_url=deps.platform(request).settings.base_url + "/fhir",  # not the Host header,
        )
    name = f"secretum-record-{now:%Y%m%d}.zip"
    return StreamingResponse(
        result.iter_zip(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/rights/erasure", response_class=HTMLResponse, **pages.back_to(RIGHTS))
def erase(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    confirm: FormStr = "",
) -> HTMLResponse:
    """Erase my record: at once if the retention period is over, else restricted now and
    scheduled for its end. The page shows which."""
    if confirm != "yes":
        return rights_page(request, caller, svc, now, error="error.confirm_erasure", status=400)
    with pages.step_up_then(RIGHTS):
        outcome = svc.rights.request_erasure(caller.context(SELF, now), caller.user_id)
    return rights_page(request, caller, svc, now, outcome=outcome)


@router.post("/rights/restriction", **pages.back_to(RIGHTS))
def restrict(
    caller: PatientCaller, svc: Svc, now: Now, restricted: FormStr = ""
) -> RedirectResponse:
    """Restrict the processing of my data (GDPR art. 18), or lift the restriction."""
    if restricted not in ("on", "off"):
        raise pages.PageError(400, "error.invalid")
    svc.rights.set_restriction(
        caller.context(SELF, now),
        caller.user_id,
        restricted == "on",
    )
    return pages.done(RIGHTS, "restricted" if restricted == "on" else "unrestricted")


@router.post("/rights/rectification", response_class=HTMLResponse, **pages.back_to(RIGHTS))
def rectify(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    text: FormStr = "",
    about: FormStr = "",
) -> Response:
    """Ask my care team to correct my record (``about``: ``Observation/<id>``, optional)."""
    if not text.strip() or len(text) > MAX_TEXT:
        return rights_page(request, caller, svc, now, error="error.rectification_text", status=400)
    target = None
    if about.strip():
        kind, _, rid = about.strip().partition("/")
        if not kind or not rid:
            return rights_page(request, caller, svc, now, error="error.about", status=400)
        target = (kind, rid)
    svc.rights.request_rectification(
        caller.context(SELF, now),
        caller.user_id,
        text.strip(),
        about=target,
    )
    return pages.done(RIGHTS, "rectification")
