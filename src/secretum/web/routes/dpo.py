"""The data protection officer's pages (``/dpo``): the audit log's state and its verification on
demand, and the review of break-the-glass accesses.

The DPO never sees health data: the audit holds ids and codes, the review list ids and times.
Reading a break-the-glass reason (sealed with the patient's key) is a separate, audited act.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from secretum.access.model import Purpose, Role
from secretum.audit.browse import EntryFilter
from secretum.audit.model import EventType, Outcome
from secretum.policy.breakglass import AlreadyReviewed
from secretum.policy.grants import ReviewOutcome
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.i18n import translate
from secretum.web.templating import clinic_zone, language, render

router = APIRouter(prefix="/dpo", route_class=pages.CarePageRoute, include_in_schema=False)

DpoCaller = Annotated[Caller, Depends(deps.role(Role.DPO))]
Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]
REVIEWS = "/dpo/break-glass"
ENTRIES = "/dpo/audit/entries"
PAGE_SIZE = 50
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@router.get("/audit", response_class=HTMLResponse)
def audit(
    caller: DpoCaller, request: Request, svc: Svc, now: Now, verified: int = 0
) -> HTMLResponse:
    """The audit log: tree size, root, last signed checkpoint; a button to verify it; the
    result of the verification just run (``?verified=<id>``) and the last ones."""
    ctx = caller.context(Purpose.OPERATIONS, now)
    status = svc.oversight.audit_status(ctx)
    history = svc.oversight.verifications(ctx)
    just = next((v for v in history if v.id == verified), None)
    return render(
        request,
        "dpo_audit.html",
        status=status,
        history=history,
        just=just,
        names=svc.directory.staff({v.actor_id for v in history}),
        **pages.ctx(request),
    )


@router.post("/audit/verify", **pages.back_to("/dpo/audit"))
def verify(caller: DpoCaller, svc: Svc, now: Now) -> RedirectResponse:
    """Verify the whole log now (RFC 9162 tree, signed checkpoints, witness file), keep the
    outcome, and show it on the audit page (post/redirect/get: a refresh never re-verifies)."""
    done = svc.oversight.verify(caller.context(Purpose.OPERATIONS, now))
    return RedirectResponse(f"/dpo/audit?verified={done.id}#verify-h", status_code=303)


def _day(text: str, request: Request, *, end: bool) -> datetime | None:
    """A ``YYYY-MM-DD`` day of the clinic's zone: its first (or, ``end``, its last) instant."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise pages.PageError(400, "error.invalid") from None
    start = datetime.combine(day, time(), tzinfo=clinic_zone(request))
    return start + timedelta(days=1, microseconds=-1) if end else start


def _filter(
    request: Request, since: str, until: str, actor: str, patient: str, event: str, outcome: str
) -> EntryFilter:
    """The DPO's filters, checked (an id, a known event code, a known outcome): a bad value
    is a 400 page that echoes nothing."""
    for value in (actor, patient):
        if value and not _ID.fullmatch(value):
            raise pages.PageError(400, "error.invalid")
    if event and event not in {str(e) for e in EventType}:
        raise pages.PageError(400, "error.invalid")
    if outcome and outcome not in {str(int(o)) for o in Outcome}:
        raise pages.PageError(400, "error.invalid")
    return EntryFilter(
        since=_day(since, request, end=False),
        until=_day(until, request, end=True),
        actor_id=actor or None,
        patient_id=patient or None,
        event_type=event or None,
        outcome=int(outcome) if outcome else None,
    )


@router.get("/audit/entries", response_class=HTMLResponse)
def audit_entries(
    caller: DpoCaller,
    request: Request,
    svc: Svc,
    now: Now,
    since: str = "",
    until: str = "",
    actor: str = "",
    patient: str = "",
    event: str = "",
    outcome: str = "",
    before: int | None = None,
) -> HTMLResponse:
    """Browse the audit entries with filters (days, actor id, patient id, event, outcome),
    newest first, 50 a page: ids and codes only. The browsing is decided and audited."""
    wanted = _filter(request, since, until, actor, patient, event, outcome)
    if before is not None and before < 0:
        raise pages.PageError(400, "error.invalid")
    found = svc.oversight.browse(
        caller.context(Purpose.OPERATIONS, now), wanted, limit=PAGE_SIZE, before=before
    )
    query = {
        k: v
        for k, v in dict(
            since=since, until=until, actor=actor, patient=patient, event=event, outcome=outcome
        ).items()
        if v
    }
    older = None
    if found.next_before is not None:
        older = f"{ENTRIES}?{urlencode({**query, 'before': found.next_before})}"
    return render(
        request,
        "dpo_audit_entries.html",
        entries=found.entries,
        form=query,
        events=[str(e) for e in EventType],
        outcomes=[int(o) for o in Outcome],
        older=older,
        first_page=f"{ENTRIES}?{urlencode(query)}" if before is not None else None,
        **pages.ctx(request),
    )


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
    reviewed = svc.oversight.reviews(caller.context(Purpose.OPERATIONS, now), limit=PAGE_SIZE)
    messages = []
    if done == "reviewed":
        messages.append(("success", translate(language(request), "done.reviewed")))
    return render(
        request,
        "dpo_break_glass.html",
        grants=grants,
        accesses={grant.grant_id: entries for grant, entries in queue},
        reviewed=reviewed,
        names=svc.directory.staff(
            {g.practitioner_id for g in (*grants, *reviewed)}
            | {g.review.reviewer_id for g in reviewed if g.review is not None}
        ),
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
    """Break-the-glass grants waiting for a review: who, which patient (id), when, how long;
    then the reviews already made (who reviewed which grant, when, with which outcome)."""
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
