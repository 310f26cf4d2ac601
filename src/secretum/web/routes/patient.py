"""The patient's pages (``/me``): my record and documents, my consents and care team, who opened
my record. The rights pages (export, erasure, restriction, rectification) are in
:mod:`secretum.web.routes.patient_rights`.

Every route is for a signed-in patient, on their own record (the patient id is the session's
user id: no route takes a patient id). Each handler makes one use-case call — the service asks
the policy and writes the audit entry — and renders; refusals become pages
(:class:`~secretum.web.care_pages.CarePageRoute`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from secretum.access.context import RequestContext
from secretum.access.model import CONSENTED_PURPOSES, Purpose, Role
from secretum.consent.store import ConsentMethod
from secretum.notices.store import Notice
from secretum.records.documents import DocumentContent
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.templating import clinic_zone, language, render

router = APIRouter(prefix="/me", route_class=pages.CarePageRoute, include_in_schema=False)

PatientCaller = Annotated[Caller, Depends(deps.role(Role.PATIENT))]
Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]

SELF = Purpose.PATIENT_REQUEST
ACCESS_GROUPS = 50  # groups per page of "who opened my record"
#: The purposes shown one by one on the consents page (sharing has its own section).
PURPOSES = (
    Purpose.TELECONSULTATION,
    Purpose.TELERADIOLOGY,
    Purpose.REMOTE_MONITORING,
    Purpose.RESEARCH,
)


# -- my record ----------------------------------------------------------------------------------


def _people(notices: list[Notice]) -> set[str]:
    """The staff a notice names (who acted; to whom a referral goes)."""
    return {n.params[k] for n in notices for k in ("actor_id", "practitioner_id") if k in n.params}


@router.get("/record", response_class=HTMLResponse)
def my_record(caller: PatientCaller, request: Request, svc: Svc, now: Now) -> HTMLResponse:
    """My record: Patient, Observations, DocumentReferences (restricted ones too: mine)."""
    records = svc.records.search(caller.context(SELF, now), caller.user_id)
    notices = svc.notices.of(caller.user_id)
    signed = svc.reports.signed_reports(caller.context(SELF, now), caller.user_id)
    view = pages.record_view(records)
    names = svc.directory.staff(
        _people(notices)
        | {n["author_id"] for n in view["notes"]}
        | {s.verification.signer_id for s in signed if s.verification.signer_id}
    )
    return render(
        request,
        "patient_record.html",
        view=view,
        signed_reports=[pages.signed_report_view(s, names) for s in signed],
        notices=notices[:10],
        names=names,
        **pages.ctx(request),
    )


@router.get("/documents/{document_id}")
def my_document(document_id: str, caller: PatientCaller, svc: Svc, now: Now) -> StreamingResponse:
    """Download one of my documents (decrypted as it streams; audited as a read)."""
    content = svc.documents.open_document(caller.context(SELF, now), document_id)
    return download(content)


def download(content: DocumentContent) -> StreamingResponse:
    """A document's file as an attachment, closed once sent."""

    def chunks() -> Iterator[bytes]:
        with content:
            while chunk := content.reader.read(256 * 1024):
                yield chunk

    name = f"{content.resource_id}.{content.extension}"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Length": str(content.size),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(chunks(), media_type=content.content_type, headers=headers)


# -- my consents --------------------------------------------------------------------------------


@router.get("/consents", response_class=HTMLResponse)
def my_consents(
    caller: PatientCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """Each purpose with its current text (page language), its hash, grant or withdraw; the
    practitioners I share with; the history of my consents with their evidence."""
    lang = language(request)
    history = svc.consent.history(
        RequestContext(caller.actor, Purpose.PATIENT_REQUEST, now, pages.address(caller)),
        caller.user_id,
    )
    texts = svc.consent.texts

    def section(purpose: Purpose) -> dict[str, object]:
        text = texts.current(purpose, lang)
        active = [
            r for r in history if r.purpose is purpose and r.active(now) and r.grantee_id is None
        ]
        return {
            "purpose": str(purpose),
            "title": text.title,
            "blocks": pages.text_blocks(text.body),
            "version": text.version,
            "sha256": text.sha256,
            "active": active[0] if active else None,
        }

    sharing_text = texts.current(Purpose.SHARING, lang)
    shares = [r for r in history if r.purpose is Purpose.SHARING and r.active(now)]
    people = {r.grantee_id or "" for r in history} | {r.granted.actor_id for r in history}
    people |= {r.withdrawn.actor_id for r in history if r.withdrawn}
    return render(
        request,
        "patient_consents.html",
        sections=[section(p) for p in PURPOSES],
        sharing={
            "title": sharing_text.title,
            "blocks": pages.text_blocks(sharing_text.body),
            "version": sharing_text.version,
            "sha256": sharing_text.sha256,
            "active": shares,
        },
        history=sorted(history, key=lambda r: r.granted.at, reverse=True),
        practitioners=svc.directory.practitioners(),
        names=svc.directory.staff(people),
        **pages.ctx(request),
        flashes=pages.flashes(request, done),
    )


def _purpose(value: str) -> Purpose:
    try:
        purpose = Purpose(value)
    except ValueError:
        raise pages.PageError(400, "error.purpose") from None
    if purpose not in CONSENTED_PURPOSES:
        raise pages.PageError(400, "error.purpose")
    return purpose


def _practitioner(svc: Services, value: str) -> str:
    """An active practitioner's id from a form, or a 400."""
    if value not in {p.user_id for p in svc.directory.practitioners()}:
        raise pages.PageError(400, "error.practitioner")
    return value


@router.post("/consents/grant", **pages.back_to("/me/consents"))
def grant_consent(
    caller: PatientCaller,
    svc: Svc,
    now: Now,
    purpose: FormStr = "",
    text_sha256: FormStr = "",
    grantee_id: FormStr = "",
) -> RedirectResponse:
    """I consent to ``purpose`` under the exact text I was shown (its SHA-256)."""
    chosen = _purpose(purpose)
    grantee = _practitioner(svc, grantee_id) if chosen is Purpose.SHARING else None
    if svc.consent.texts.by_hash(text_sha256).purpose is not chosen:
        raise pages.PageError(400, "error.invalid")
    svc.consent.grant(
        RequestContext(caller.actor, Purpose.PATIENT_REQUEST, now, pages.address(caller)),
        patient_id=caller.user_id,
        purpose=chosen,
        text_sha256=text_sha256,
        method=ConsentMethod.WEB_CHECKBOX,
        grantee_id=grantee,
    )
    return pages.done("/me/consents", "granted")


@router.post("/consents/withdraw", **pages.back_to("/me/consents"))
def withdraw_consent(
    caller: PatientCaller,
    svc: Svc,
    now: Now,
    purpose: FormStr = "",
    grantee_id: FormStr = "",
) -> RedirectResponse:
    """I withdraw my consent to ``purpose``: effective for the very next request."""
    chosen = _purpose(purpose)
    svc.consent.withdraw(
        RequestContext(caller.actor, Purpose.PATIENT_REQUEST, now, pages.address(caller)),
        patient_id=caller.user_id,
        purpose=chosen,
        method=ConsentMethod.WEB_CHECKBOX,
        grantee_id=(grantee_id or None) if chosen is Purpose.SHARING else None,
    )
    return pages.done("/me/consents", "withdrawn")


# -- my care team -------------------------------------------------------------------------------


@router.get("/care-team", response_class=HTMLResponse)
def my_care_team(
    caller: PatientCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """The practitioners caring for me (and since when, on what basis), those I named for my
    restricted data; invite a practitioner, end a relationship, name or un-name."""
    team = svc.care_reads.care_team(caller.user_id, now)
    return render(
        request,
        "patient_care_team.html",
        relationships=sorted(team.relationships, key=lambda r: r.started_at, reverse=True),
        named=team.named,
        practitioners=svc.directory.practitioners(),
        names=svc.directory.staff(),
        now=now,
        **pages.ctx(request),
        flashes=pages.flashes(request, done),
    )


def _my_choice(caller: Caller, now: datetime, act: Callable[..., Any], **what: object) -> Any:
    """One of my care-team choices (``svc.choices.<act>``: its own transaction, its door)."""
    return act(caller.context(SELF, now), patient_id=caller.user_id, **what)


@router.post("/care-team/invite", **pages.back_to("/me/care-team"))
def invite_practitioner(
    caller: PatientCaller, svc: Svc, now: Now, practitioner_id: FormStr = ""
) -> RedirectResponse:
    """I invite a practitioner into my care team (basis INVITATION)."""
    chosen = _practitioner(svc, practitioner_id)
    _my_choice(caller, now, svc.choices.invite, practitioner_id=chosen)
    return pages.done("/me/care-team", "invited")


@router.post("/care-team/appointment", **pages.back_to("/me/care-team"))
def book_appointment(
    caller: PatientCaller,
    svc: Svc,
    now: Now,
    request: Request,
    practitioner_id: FormStr = "",
    at: FormStr = "",
) -> RedirectResponse:
    """I book a consultation: the practitioner joins my care team until its follow-up ends."""
    chosen = _practitioner(svc, practitioner_id)
    when = pages.local_time(at, clinic_zone(request))
    try:
        _my_choice(caller, now, svc.choices.book_appointment, practitioner_id=chosen, at=when)
    except ValueError:
        raise pages.PageError(400, "error.appointment") from None
    return pages.done("/me/care-team", "booked")


@router.post("/care-team/end", **pages.back_to("/me/care-team"))
def end_relationship(
    caller: PatientCaller, svc: Svc, now: Now, relationship_id: FormStr = ""
) -> RedirectResponse:
    """I end one of my care relationships (effective at once)."""
    act = svc.choices.end_relationship
    if not _my_choice(caller, now, act, relationship_id=relationship_id):
        raise pages.PageError(404, "error.not_found")
    return pages.done("/me/care-team", "ended")


@router.post("/care-team/name", **pages.back_to("/me/care-team"))
def name_for_restricted(
    caller: PatientCaller, svc: Svc, now: Now, practitioner_id: FormStr = ""
) -> RedirectResponse:
    """I name a practitioner for my restricted data (mental health, HIV...)."""
    chosen = _practitioner(svc, practitioner_id)
    _my_choice(caller, now, svc.choices.name_for_restricted, practitioner_id=chosen)
    return pages.done("/me/care-team", "named")


@router.post("/care-team/unname", **pages.back_to("/me/care-team"))
def unname(
    caller: PatientCaller, svc: Svc, now: Now, practitioner_id: FormStr = ""
) -> RedirectResponse:
    """I revoke a naming for restricted data (effective at once)."""
    act = svc.choices.revoke_named
    revoked = _my_choice(caller, now, act, practitioner_id=practitioner_id)
    return pages.done("/me/care-team", "unnamed" if revoked else "nothing")


# -- who opened my record -----------------------------------------------------------------------


@router.get("/access-log", response_class=HTMLResponse)
def access_log(
    caller: PatientCaller,
    request: Request,
    svc: Svc,
    now: Now,
    page: int = 1,
) -> HTMLResponse:
    """Every audited access to my data, in plain words: repeated accesses of one person, for
    one purpose, on one day grouped ("Dr X viewed your record 3 times, for your care, between
    09:12 and 09:40"), refused attempts said so, break-the-glass accesses highlighted with their
    notices; 50 groups a page, newest first."""
    tz = clinic_zone(request)
    found = svc.rights.grouped_access_history(
        caller.context(SELF, now), caller.user_id, tz, page=page, per_page=ACCESS_GROUPS
    )
    notices = [n for n in svc.notices.of(caller.user_id) if n.kind == "break-glass-access"]
    ids = {g.actor_id for g in found.groups} | _people(notices)
    return render(
        request,
        "patient_access_log.html",
        groups=found.groups,
        page=found.page,
        has_next=found.has_next,
        truncated=found.truncated,
        notices=notices,
        names=svc.directory.staff(ids),
        me=caller.user_id,
        hm=lambda when: when.astimezone(tz).strftime("%H:%M"),
        **pages.ctx(request),
    )
