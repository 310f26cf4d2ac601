"""The practitioner's imaging pages: a patient's studies, a study's series, the stack viewer.

* ``/practice/patients/{pid}/imaging``: the patient's studies (a QIDO-style search, one audit
  entry);
* ``.../imaging/studies/{study}``: its series with thumbnails: the study is opened once for
  viewing (one audit entry, 110103) and its thumbnails are served under that viewing's ticket;
* ``.../imaging/studies/{study}/series/{series}``: the stack viewer: the series is opened once
  (one audit entry) and every frame the page then asks for (scrolling, window/level) is served
  under the ticket, the policy asked again silently each time
  (:mod:`secretum.imaging.viewing` explains the choice of a sealed, session-bound ticket).

The frame and thumbnail routes (``/practice/imaging/view/{ticket}/...``) check the session
like every page, then the ticket (same actor, same session, unexpired): anyone else, or a
ticket that does not hold, is refused (audited). They answer images, or the DICOMweb refusal
bodies (:func:`secretum.web.refusals.imaging_refusal`). Decryption and rendering block: the
handlers are plain functions (FastAPI runs them in a worker thread).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from secretum.access.model import Role
from secretum.imaging.archive_model import StudyMatch
from secretum.imaging.render import (
    CT_PRESETS,
    Format,
    Window,
    effective_window,
    render,
    thumbnail,
)
from secretum.imaging.viewing import Viewing
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.routes.dicomweb_rendered import RenderedRoute
from secretum.web.routes.practice import purpose_of
from secretum.web.templating import language
from secretum.web.templating import render as render_page

router = APIRouter(prefix="/practice", route_class=pages.CarePageRoute, include_in_schema=False)

Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
IMAGING = "/practice/patients/{patient_id}/imaging"
#: The window a frame was rendered with (``center,width``), on the viewer's frame answers.
WINDOW_HEADER = "x-window"


async def _practitioner(
    caller: Annotated[Caller, Depends(deps.role(Role.PRACTITIONER))],
) -> Caller:
    return caller


PractitionerCaller = Annotated[Caller, Depends(_practitioner)]


def _text(attrs: dict[str, Any], tag: str) -> str:
    values = attrs.get(tag, {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):
        return str(value.get("Alphabetic", ""))
    return str(value)


def dicom_date(value: str, lang: str) -> str:
    """``YYYYMMDD`` as people write it (``29/11/2026`` in French, ``2026-11-29`` in English)."""
    if len(value) != 8 or not value.isdigit():
        return value
    if lang == "fr":
        return f"{value[6:]}/{value[4:6]}/{value[:4]}"
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


def person_name(value: str) -> str:
    """A DICOM person name (``Family^Given^Middle^Prefix^Suffix``) as ``Given Family``."""
    parts = value.split("=")[0].split("^")
    family, given = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")
    return f"{given} {family}".strip()


def _study_row(match: StudyMatch, lang: str) -> dict[str, Any]:
    attrs = match.attributes
    return {
        "uid": match.study_uid,
        "date": dicom_date(_text(attrs, "00080020"), lang),
        "description": _text(attrs, "00081030"),
        "accession": _text(attrs, "00080050"),
        "modalities": ", ".join(match.modalities),
        "series": match.series_count,
        "instances": match.instance_count,
    }


@router.get("/patients/{patient_id}/imaging", response_class=HTMLResponse)
def studies(
    patient_id: str,
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    purpose: str = "",
) -> HTMLResponse:
    """The patient's imaging studies the policy lets me see (newest first)."""
    chosen = purpose_of(purpose, caller.actor)
    found = svc.imaging.search_studies(caller.context(chosen, now), patient_id=patient_id)
    lang = language(request)
    newest = sorted(found, key=lambda m: _text(m.attributes, "00080020"), reverse=True)
    rows = [_study_row(m, lang) for m in newest]
    return render_page(
        request,
        "imaging_studies.html",
        patient_id=patient_id,
        purpose=str(chosen),
        studies=rows,
        **pages.ctx(request),
    )


def _viewing_context(viewing: Viewing, lang: str) -> dict[str, Any]:
    return {
        "patient_name": person_name(viewing.patient_name),
        "study_date": dicom_date(viewing.study_date, lang),
        "study_description": viewing.study_description,
    }


@router.get(
    "/patients/{patient_id}/imaging/studies/{study_uid}",
    response_class=HTMLResponse,
    **pages.back_to(IMAGING),
)
def series_list(
    patient_id: str,
    study_uid: str,
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    purpose: str = "",
) -> HTMLResponse:
    """A study's series, each with its thumbnail (the study opened once for viewing)."""
    chosen = purpose_of(purpose, caller.actor)
    viewing = svc.imaging_viewer.open(
        caller.context(chosen, now), study_uid, binding=caller.session_id, patient_id=patient_id
    )
    return render_page(
        request,
        "imaging_series.html",
        patient_id=patient_id,
        purpose=str(chosen),
        viewing=viewing,
        **_viewing_context(viewing, language(request)),
        **pages.ctx(request),
    )


@router.get(
    "/patients/{patient_id}/imaging/studies/{study_uid}/series/{series_uid}",
    response_class=HTMLResponse,
    **pages.back_to(IMAGING),
)
def stack_viewer(
    patient_id: str,
    study_uid: str,
    series_uid: str,
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    purpose: str = "",
) -> HTMLResponse:
    """The stack viewer of one series (the series opened once: one audit entry)."""
    chosen = purpose_of(purpose, caller.actor)
    viewing = svc.imaging_viewer.open(
        caller.context(chosen, now),
        study_uid,
        series_uid,
        binding=caller.session_id,
        patient_id=patient_id,
    )
    [series] = viewing.series
    is_ct = series.modality == "CT"
    window = series.window or (CT_PRESETS["soft-tissue"] if is_ct else None)
    frames = [[f.sop_uid, f.number, f.position] for f in series.frames]
    return render_page(
        request,
        "imaging_viewer.html",
        patient_id=patient_id,
        purpose=str(chosen),
        viewing=viewing,
        series=series,
        frames=frames,
        default_window=[window.center, window.width] if window else None,
        # the presets are Hounsfield windows: for CT only
        presets=[[n, w.center, w.width] for n, w in CT_PRESETS.items()] if is_ct else [],
        **_viewing_context(viewing, language(request)),
        **pages.ctx(request),
    )


# -- images under a viewing ticket ---------------------------------------------------------------


def viewing_frame(
    ticket: str,
    sop_uid: str,
    number: int,
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
) -> Response:
    """One frame of the opened series as PNG (``window=center,width[,function]``)."""
    text = request.query_params.get("window")
    asked = Window.parse(text) if text else None
    ctx = caller.context(purpose_of("", caller.actor), now)  # the ticket's purpose replaces it
    source = svc.imaging_viewer.frame(ctx, ticket, caller.session_id, sop_uid, number)
    window = effective_window(source.pixels, source.module, asked)
    image = render(source.pixels, source.module, Format.PNG, window=window)
    headers = {"cache-control": "private, no-store"}
    if window is not None:  # what was applied: a series without a stored window learns it here
        headers[WINDOW_HEADER] = f"{window.center:g},{window.width:g}"
    return Response(image, media_type="image/png", headers=headers)


def viewing_thumbnail(
    ticket: str,
    series_uid: str,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
) -> Response:
    """The thumbnail of a series of the opened study (JPEG)."""
    ctx = caller.context(purpose_of("", caller.actor), now)
    source = svc.imaging_viewer.series_thumbnail(ctx, ticket, caller.session_id, series_uid)
    image = thumbnail(source.pixels, source.module, Format.JPEG)
    return Response(image, media_type="image/jpeg", headers={"cache-control": "private, no-store"})


# The images answer images or the DICOMweb refusal bodies, not pages: their own route class.
for _path, _endpoint in (
    ("/imaging/view/{ticket}/frames/{sop_uid}/{number}", viewing_frame),
    ("/imaging/view/{ticket}/series/{series_uid}/thumbnail", viewing_thumbnail),
):
    router.add_api_route(_path, _endpoint, methods=["GET"], route_class_override=RenderedRoute)
