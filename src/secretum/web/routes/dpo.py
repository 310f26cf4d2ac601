"""The data protection officer's pages (``/dpo``): the audit log's state and its verification on
demand, and the review of break-the-glass accesses.

The DPO never sees health data: the audit holds ids and codes, the review list ids and times.
Reading a break-the-glass reason (sealed with the patient's key) is a separate, audited act.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from secretum.access.model import Purpose, Role
from secretum.policy.breakglass import AlreadyReviewed
from secretum.policy.grants import ReviewOutcome
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.i18n import translate
from secretum.web.templating import language, render

router = APIRouter(prefix="/dpo", route_class=pages.CarePageRoute, include_in_schema=False)

DpoCaller = Annotated[Caller, Depends(deps.role(Role.DPO))]
Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]
REVIEWS = "/dpo/break-glass"


@router.get("/audit", response_class=HTMLResponse)
def audit(caller: DpoCaller, request: Request, svc: Svc, now: Now) -> HTMLResponse:
    """The audit log: tree size, root, last signed checkpoint; a button to verify it."""
    status = svc.oversight.audit_status(caller.context(Purpose.OPERATIONS, now))
    return render(request, "dpo_audit.html", status=status, **pages.ctx(request))


@router.post("/audit/verify", response_class=HTMLResponse, **pages.back_to("/dpo/audit"))
def verify(caller: DpoCaller, request: Request, svc: Svc, now: Now) -> HTMLResponse:
    """Verify the whole log now (RFC 9162 tree, signed checkpoints, witness file): OK, or the
    first finding."""
    status = svc.oversight.audit_status(caller.context(Purpose.OPERATIONS, now), run_verify=True)
    return render(request, "dpo_audit.html", status=status, **pages.ctx(request))


def reviews_page(
    request: Request,
    caller: Caller,
    svc: Services,
    now: datetime,
    *,
    reason: tuple[str, str] | None = None,
    done: str = "",
) -> HTMLResponse:
    queue = svc.oversight.review_queue(caller.context(Purpose.OPERATIONS, now))
    grants = [grant for grant, _ in queue]
    messages = []
    if done == "reviewed":
        messages.append(("success", translate(language(request), "done.reviewed")))
    return render(
        request,
        "dpo_break_glass.html",
        grants=grants,
        accesses={grant.grant_id: entries for grant, entries in queue},
        names=svc.directory.staff({g.practitioner_id for g in grants}),
        outcomes=[str(o) for o in ReviewOutcome],
        reason=reason,
        now=now,
        **pages.ctx(request),
        flashes=messages,
    )


@router.get("/break-glass", response_class=HTMLResponse)
def break_glass(
    caller: DpoCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """Break-the-glass grants waiting for a review: who, which patient (id), when, how long."""
    return reviews_page(request, caller, svc, now, done=done)


@router.post(
    "/break-glass/{grant_id}/reason", response_class=HTMLResponse, **pages.back_to(REVIEWS)
)
def read_reason(
    grant_id: str, caller: DpoCaller, request: Request, svc: Svc, now: Now
) -> HTMLResponse:
    """Open the written reason of a grant (sealed with the patient's key; audited)."""
    text = svc.break_glass.read_reason(caller.context(Purpose.OPERATIONS, now), grant_id)
    return reviews_page(request, caller, svc, now, reason=(grant_id, text))


@router.post("/break-glass/{grant_id}/review", **pages.back_to(REVIEWS))
def review(
    grant_id: str, caller: DpoCaller, svc: Svc, now: Now, outcome: FormStr = ""
) -> RedirectResponse:
    """Record my conclusion: justified, unjustified, or needs follow-up."""
    try:
        chosen = ReviewOutcome(outcome)
    except ValueError:
        raise pages.PageError(400, "error.outcome") from None
    try:
        svc.break_glass.review(caller.context(Purpose.OPERATIONS, now), grant_id, chosen)
    except AlreadyReviewed:  # reviewed meanwhile (a second submit): the first review stands
        raise pages.PageError(409, "error.already_reviewed") from None
    return pages.done(REVIEWS, "reviewed")
