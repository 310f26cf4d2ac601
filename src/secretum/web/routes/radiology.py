"""The radiologist's pages (``/radiology``): the worklist of studies referred to me and not yet
reported, a study's report editor, signing with my passkey or security key.

* ``GET /radiology/worklist`` · ``GET /radiology/studies/{uid}`` (the study, its reports and
  the editor) · ``POST /radiology/studies/{uid}/report`` (save a draft or an amendment);
* ``POST /radiology/reports/{id}/sign/options|verify`` (JSON, for ``static/webauthn.js``):
  the WebAuthn options whose challenge is the SHA-256 of the report's canonical form, then the
  assertion (:class:`~secretum.radiology.service.ReportService`).

Every read and write is a use case (one decision, one audit entry); a refusal becomes a page
(``care_pages.CarePageRoute``) or, on the JSON endpoints, ``{"error": <message>}``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from secretum.access.errors import Refused
from secretum.access.model import Purpose
from secretum.radiology.canonical import study_uid_of
from secretum.radiology.ceremony import REPORT
from secretum.radiology.service import report_digest
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.i18n import translate
from secretum.web.routes.practice import PractitionerCaller
from secretum.web.templating import language, render

router = APIRouter(prefix="/radiology", route_class=pages.CarePageRoute, include_in_schema=False)

Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
TR = Purpose.TELERADIOLOGY
STUDY_PAGE = "/radiology/studies/{study_uid}"
DONE = frozenset({"saved", "signed"})


def _value(attrs: dict[str, Any], tag: str) -> str:
    values = attrs.get(tag, {}).get("Value") or []
    if not values:
        return ""
    value = values[0]
    if isinstance(value, dict):  # PN
        return str(value.get("Alphabetic", "")).replace("^", " ").strip()
    return str(value)


def study_view(
    uid: str, attrs: dict[str, Any], modalities: tuple[str, ...], n: int
) -> dict[str, Any]:
    date = _value(attrs, "00080020")
    return {
        "uid": uid,
        "patient_name": _value(attrs, "00100010"),
        "date": f"{date[6:8]}/{date[4:6]}/{date[:4]}" if len(date) == 8 else "",
        "description": _value(attrs, "00081030"),
        "accession": _value(attrs, "00080050"),
        "modalities": ", ".join(modalities),
        "instances": n,
    }


@router.get("/worklist", response_class=HTMLResponse)
def worklist(caller: PractitionerCaller, request: Request, svc: Svc, now: Now) -> HTMLResponse:
    """Studies referred to me and not yet reported."""
    items = svc.reports.worklist(caller.context(TR, now))
    views = [
        {
            **study_view(i.study_uid, i.attributes, i.modalities, i.number_of_instances),
            "draft": i.draft_id,
        }
        for i in items
    ]
    return render(request, "radiology_worklist.html", items=views, **pages.ctx(request))


@router.get(
    "/studies/{study_uid}", response_class=HTMLResponse, **pages.back_to("/radiology/worklist")
)
def study(
    study_uid: str, caller: PractitionerCaller, request: Request, svc: Svc, now: Now, done: str = ""
) -> HTMLResponse:
    """One study: its attributes, its reports (each version's signature) and the editor."""
    ctx = caller.context(TR, now)
    match, rows = svc.reports.study(ctx, study_uid)
    reports = []
    for row in rows:
        history = svc.reports.records.history(ctx, REPORT, row["report_id"])
        versions = []
        for record in history:
            verification = svc.reports.check(record)
            versions.append(
                {
                    "version": record.version,
                    "status": record.resource.get("status", ""),
                    "conclusion": record.resource.get("conclusion", ""),
                    "signed": verification.signed,
                    "valid": verification.valid,
                    "signer": verification.signer_id,
                    "when": pages.parse_time(verification.signed_at)
                    if verification.signed_at
                    else None,
                    "digest": report_digest(record)[:16] if verification.signed else "",
                }
            )
        current = versions[0] if versions else None
        reports.append({"id": row["report_id"], "versions": versions, "current": current})
    lang = language(request)
    flashes = [("success", translate(lang, f"radiology.done.{done}"))] if done in DONE else []
    return render(
        request,
        "radiology_report.html",
        study=study_view(match.study_uid, match.attributes, match.modalities, match.instance_count),
        reports=reports,
        **pages.ctx(request),
        flashes=flashes,
    )


@router.post("/studies/{study_uid}/report", **pages.back_to(STUDY_PAGE))
def save_report(
    study_uid: str,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
    text: Annotated[str, Form(max_length=20_000)] = "",
    report_id: Annotated[str, Form(max_length=64)] = "",
) -> RedirectResponse:
    """Save the report as a draft (or a new draft version: an amendment)."""
    svc.reports.save_draft(caller.context(TR, now), study_uid, text, report_id=report_id or None)
    return RedirectResponse(f"/radiology/studies/{study_uid}?done=saved", status_code=303)


def _json_refusal(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status", 400)
    key = "radiology.sign_refused" if status != 403 else "radiology.sign_forbidden"
    return JSONResponse({"error": translate(language(request), key)}, status_code=status)


@router.post("/reports/{report_id}/sign/options")
def sign_options(
    report_id: str, request: Request, caller: PractitionerCaller, svc: Svc, now: Now
) -> JSONResponse:
    """WebAuthn request options: the challenge is the SHA-256 of what will be signed."""
    try:
        start = svc.reports.begin_signing(caller.context(TR, now), report_id)
    except Refused as exc:
        return _json_refusal(request, exc)
    return JSONResponse({"options": json.loads(start.options), "ceremony": start.challenge_id})


@router.post("/reports/{report_id}/sign/verify")
def sign_verify(
    report_id: str,
    request: Request,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
    ceremony: Annotated[str, Body(max_length=200)],
    credential: Annotated[dict[str, Any], Body()],
) -> JSONResponse:
    """The assertion: verified, then the signed version is stored with it."""
    try:
        record = svc.reports.finish_signing(
            caller.context(TR, now), report_id, ceremony, credential
        )
    except Refused as exc:
        return _json_refusal(request, exc)
    uid = study_uid_of(record.resource) or ""
    return JSONResponse({"next": f"/radiology/studies/{uid}?done=signed"})
