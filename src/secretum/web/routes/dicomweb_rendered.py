"""WADO-RS rendered and thumbnail resources (PS3.18 8.3.5 and 9.3.1.2), for browsers.

``GET /dicomweb/studies/{study}[/series/{series}[/instances/{sop}[/frames/{list}]]]/rendered``
and ``.../thumbnail``: the frames as PNG or JPEG (``Accept`` header or ``accept`` query
parameter; ``image/*`` and ``*/*`` get PNG, anything else 406), with the query parameters
``window=center,width[,linear|linear_exact|sigmoid]``, ``viewport=vw,vh`` and ``quality``.
A single image answers as that image; several (a study, a series, a multi-frame instance, a
frame list) as ``multipart/related; type="image/..."``, one part per frame, at most
:data:`MAX_PARTS`. A thumbnail is always one small image: the instance's first frame, the
middle instance of the series, of the study's first series.

Authenticated by the session, like the pages (:mod:`secretum.web.deps`): the machines'
mutual-TLS entry is the DICOMweb module's. Each request is one audited opening of the study or
series (:meth:`~secretum.imaging.archive.ImagingArchive.open_study`, one audit entry however
many frames it renders). Handlers are plain functions: FastAPI runs them in a worker thread
(decryption and rendering block). A study that does not exist and one the caller may not see
answer alike (:func:`secretum.web.refusals.imaging_refusal`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from secretum.access.errors import Refused
from secretum.access.model import Actor, Purpose, Role
from secretum.imaging.archive import StudyReader
from secretum.imaging.archive_model import StudyNotFound
from secretum.imaging.render import (
    NATIVE_SYNTAXES,
    BadRenderRequest,
    CannotRender,
    Format,
    Window,
    parse_viewport,
    pick_format,
    render,
    thumbnail,
)
from secretum.imaging.viewing import frame_source, representative
from secretum.services import Services
from secretum.web import deps
from secretum.web.refusals import imaging_refusal

#: Most frames one rendered request answers (a bound on the work of one request).
MAX_PARTS = 1000


class RenderedRoute(APIRoute):
    """Refusals become :func:`imaging_refusal` answers (JSON, fixed texts)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def rendered_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as exc:
                status, body = imaging_refusal(exc)
                return JSONResponse(body, status_code=status)
            except RequestValidationError:
                return JSONResponse({"error": "invalid request"}, status_code=400)

        return rendered_handler


router = APIRouter(prefix="/dicomweb", route_class=RenderedRoute, include_in_schema=False)

Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]


def purpose_of(actor: Actor) -> Purpose:
    """Practitioners read for care (teleradiology for radiologists); patients their own."""
    if actor.role is Role.PATIENT:
        return Purpose.PATIENT_REQUEST
    if actor.role is Role.PRACTITIONER:
        return Purpose.TELERADIOLOGY if actor.specialty == "radiology" else Purpose.TELECONSULTATION
    return Purpose.OPERATIONS


class Params:
    """The rendering parameters of a request (parsed before any opening)."""

    def __init__(self, request: Request, default: Format) -> None:
        q = request.query_params
        self.format = pick_format(q.get("accept") or request.headers.get("accept"), default)
        self.window = Window.parse(q["window"]) if q.get("window") else None
        self.viewport = parse_viewport(q["viewport"]) if q.get("viewport") else None
        try:
            self.quality = int(q.get("quality", "90"))
        except ValueError:
            raise BadRenderRequest("quality is 1..100") from None


def _frames(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",")]
    except ValueError:
        raise HTTPException(status_code=404) from None
    if not numbers or len(numbers) > MAX_PARTS or min(numbers) < 1:
        raise BadRenderRequest("frame numbers are 1-based, at most 1000")
    return numbers


def _image(reader: StudyReader, sop_uid: str, number: int, p: Params) -> bytes:
    source = frame_source(reader, sop_uid, number)
    return render(
        source.pixels,
        source.module,
        p.format,
        window=p.window,
        viewport=p.viewport,
        quality=p.quality,
    )


def _answer(reader: StudyReader, wanted: list[tuple[str, int]], p: Params) -> Response:
    """One image, or a multipart/related stream of them (rendered one at a time as the
    client reads, in a worker thread: memory stays at one frame whatever the count)."""
    headers = {"cache-control": "private, no-store"}
    if len(wanted) == 1:
        sop_uid, number = wanted[0]
        image = _image(reader, sop_uid, number, p)
        return Response(image, media_type=str(p.format), headers=headers)
    known = {m.sop_instance_uid: m for m in reader.instances}
    for sop_uid, number in wanted:  # refuse before the first part, not in the stream
        match = known.get(sop_uid)
        if match is None or not 1 <= number <= match.number_of_frames:
            raise StudyNotFound("no such frame in what was opened")
        if match.transfer_syntax_uid not in NATIVE_SYNTAXES:
            raise CannotRender("compressed transfer syntax: rendering not supported")
    boundary = secrets.token_hex(16)

    def parts() -> Iterator[bytes]:
        for sop_uid, number in wanted:
            image = _image(reader, sop_uid, number, p)
            yield f"--{boundary}\r\nContent-Type: {p.format}\r\n\r\n".encode() + image + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="{p.format}"; boundary={boundary}'
    return StreamingResponse(parts(), media_type=media, headers=headers)


def _all_frames(reader: StudyReader) -> list[tuple[str, int]]:
    wanted = [
        (m.sop_instance_uid, n)
        for m in sorted(
            reader.instances,
            key=lambda m: (m.series_uid, m.instance_number or 0, m.sop_instance_uid),
        )
        for n in range(1, max(m.number_of_frames, 1) + 1)
    ]
    if len(wanted) > MAX_PARTS:
        raise BadRenderRequest("too many frames for one rendered request: ask per series")
    return wanted


def _thumbnail(reader: StudyReader, sop_uid: str, number: int, p: Params) -> Response:
    source = frame_source(reader, sop_uid, number)
    image = thumbnail(source.pixels, source.module, p.format, window=p.window, viewport=p.viewport)
    return Response(image, media_type=str(p.format), headers={"cache-control": "private, no-store"})


# -- rendered ------------------------------------------------------------------------------------


@router.get("/studies/{study}/rendered")
def study_rendered(
    study: str, request: Request, caller: deps.SignedIn, svc: Svc, now: Now
) -> Response:
    p = Params(request, Format.PNG)
    reader = svc.imaging.open_study(caller.context(purpose_of(caller.actor), now), study)
    return _answer(reader, _all_frames(reader), p)


@router.get("/studies/{study}/series/{series}/rendered")
def series_rendered(
    study: str, series: str, request: Request, caller: deps.SignedIn, svc: Svc, now: Now
) -> Response:
    p = Params(request, Format.PNG)
    ctx = caller.context(purpose_of(caller.actor), now)
    reader = svc.imaging.open_series(ctx, study, series)
    return _answer(reader, _all_frames(reader), p)


@router.get("/studies/{study}/series/{series}/instances/{sop}/rendered")
def instance_rendered(
    study: str,
    series: str,
    sop: str,
    request: Request,
    caller: deps.SignedIn,
    svc: Svc,
    now: Now,
) -> Response:
    p = Params(request, Format.PNG)
    ctx = caller.context(purpose_of(caller.actor), now)
    reader = svc.imaging.open_series(ctx, study, series)
    frames = next((m.number_of_frames for m in reader.instances if m.sop_instance_uid == sop), 1)
    wanted = [(sop, n) for n in range(1, max(frames, 1) + 1)]
    if len(wanted) > MAX_PARTS:
        raise BadRenderRequest("too many frames for one rendered request: ask per frame")
    return _answer(reader, wanted, p)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered")
def frames_rendered(
    study: str,
    series: str,
    sop: str,
    frames: str,
    request: Request,
    caller: deps.SignedIn,
    svc: Svc,
    now: Now,
) -> Response:
    numbers = _frames(frames)
    p = Params(request, Format.PNG)
    ctx = caller.context(purpose_of(caller.actor), now)
    reader = svc.imaging.open_series(ctx, study, series)
    return _answer(reader, [(sop, n) for n in numbers], p)


# -- thumbnails ----------------------------------------------------------------------------------


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(
    study: str, request: Request, caller: deps.SignedIn, svc: Svc, now: Now
) -> Response:
    p = Params(request, Format.JPEG)
    reader = svc.imaging.open_study(caller.context(purpose_of(caller.actor), now), study)
    return _thumbnail(reader, representative(reader), 1, p)


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(
    study: str, series: str, request: Request, caller: deps.SignedIn, svc: Svc, now: Now
) -> Response:
    p = Params(request, Format.JPEG)
    ctx = caller.context(purpose_of(caller.actor), now)
    reader = svc.imaging.open_series(ctx, study, series)
    return _thumbnail(reader, representative(reader, series), 1, p)


@router.get("/studies/{study}/series/{series}/instances/{sop}/thumbnail")
def instance_thumbnail(
    study: str,
    series: str,
    sop: str,
    request: Request,
    caller: deps.SignedIn,
    svc: Svc,
    now: Now,
) -> Response:
    p = Params(request, Format.JPEG)
    ctx = caller.context(purpose_of(caller.actor), now)
    reader = svc.imaging.open_series(ctx, study, series)
    return _thumbnail(reader, sop, 1, p)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/thumbnail")
def frame_thumbnail(
    study: str,
    series: str,
    sop: str,
    frames: str,
    request: Request,
    caller: deps.SignedIn,
    svc: Svc,
    now: Now,
) -> Response:
    numbers = _frames(frames)
    p = Params(request, Format.JPEG)
    ctx = caller.context(purpose_of(caller.actor), now)
    reader = svc.imaging.open_series(ctx, study, series)
    return _thumbnail(reader, sop, numbers[0], p)
