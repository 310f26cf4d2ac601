"""DICOMweb (PS3.18) over the imaging archive: STOW-RS, QIDO-RS, WADO-RS at ``/dicomweb``.

Enough for OHIF v3 and dicomweb-client (see ``docs``: the endpoint list).

* **STOW-RS** ``POST /studies`` and ``/studies/{study}``: ``multipart/related;
  type="application/dicom"``, read as it arrives (:mod:`secretum.web.multipart_related`, each
  part at most ``SECRETUM_MAX_INSTANCE_MIB``), ahead of the ingest (whole parts wait in a
  queue of at most :data:`STOW_READ_AHEAD` bytes), the instances handed one by one to
  :meth:`ImagingArchive.ingest` in a worker thread. The answer is
  ``application/dicom+json`` with ReferencedSOPSequence and FailedSOPSequence (Failure Reason
  codes of :data:`secretum.imaging.part10.FAILURE_STATUSES`): 200 all stored, 202 some, 409
  none, 400 a body that is not the multipart it announced (nothing in it stored, unless parts
  before the damage were whole: each instance is stored whole or not at all), 415 another
  media type. A body cut short: the part being read is not stored (it fails), whole parts
  before it are.
* **QIDO-RS** ``GET /studies``, ``/studies/{study}/series``, ``/studies/{study}/instances``,
  ``/studies/{study}/series/{series}/instances`` (and ``/series``, ``/instances`` with a
  ``StudyInstanceUID``): the keys OHIF sends (:mod:`secretum.web.dicomweb_query`). A query is
  always about one patient: ``StudyInstanceUID`` names the study (hence its patient),
  ``PatientID`` (Secretum's patient id; with ``IssuerOfPatientID``, the DICOM patient id
  matched through the blind index), or a patient's own studies. Without any, the list is
  empty (the policy refuses health data without a patient).
* **WADO-RS** instances (``multipart/related; type="application/dicom"``, as stored),
  ``/metadata`` (DICOM JSON, bulk data and pixel data as BulkDataURI), ``/frames/{n,...}``
  (``multipart/related; type="application/octet-stream"``, the frames as stored, with their
  ``transfer-syntax``), ``/bulk/{tag}``. Rendered and thumbnail images are another module's.

**One audit entry per study or series request**: a retrieval or a frames request opens the
study once (:meth:`ImagingArchive.open_study`), whatever the number of instances and frames.

**Who calls**: a browser with its session (cookie; CSRF header on STOW), or a machine with a
client certificate of the internal CA (mutual TLS) registered as an imaging node
(:mod:`secretum.imaging.nodes`), acting within its scopes. Neither: 401.

**A refusal says nothing**: a study that does not exist and one the caller may not see get
the same 404, byte for byte (the policy's reason is logged, not sent).

Blocking work (the database, the key ring, decryption) runs in worker threads; large answers
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.from_thread
import pydicom
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, Refused, StepUpRequired
from secretum.access.model import Action, Purpose, Role
from secretum.identity.errors import IdentityError
from secretum.imaging.archive import StudyReader
from secretum.imaging.archive_model import InstanceMatch, InstanceResult, StudyQuery
from secretum.imaging.nodes import Node
from secretum.imaging.part10 import FAILURE_STATUSES, Reason
from secretum.logs import get_logger
from secretum.records.fhir import ResourceNotFound
from secretum.services import Services
from secretum.storage.integrity import RowTampered
from secretum.web import deps
from secretum.web.deps import NotSignedIn
from secretum.web.dicomweb_query import BadQuery, Qido, parse_query
from secretum.web.multipart_related import (
    MalformedBody,
    MediaTypeError,
    Part,
    RelatedReader,
    closing,
    new_boundary,
    parse_parameters,
    part_head,
    related_boundary,
)
from secretum.web.tls import client_certificate

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
OCTETS = "application/octet-stream"
PURPOSE_HEADER = "x-purpose-of-use"
#: Bytes read from an instance per worker-thread hop while streaming it.
CHUNK = 1024 * 1024
#: Instances of a WADO-RS answer decrypted ahead of the one being sent, if each is at most
#: READ_AHEAD_MAX bytes (larger ones are streamed chunk by chunk).
READ_AHEAD = 3
READ_AHEAD_MAX = 16 * 1024 * 1024
#: Bytes of whole STOW-RS parts read ahead of the ingest (the part being read is on top).
STOW_READ_AHEAD = 16 * 1024 * 1024
_log = get_logger("secretum.web.dicomweb")

DEFAULT_PURPOSE = {
    Role.PATIENT: Purpose.PATIENT_REQUEST,
    Role.PRACTITIONER: Purpose.TELERADIOLOGY,
}

_NOT_FOUND = json.dumps({"detail": "not found"}).encode()


def _error(status: int, detail: str) -> Response:
    return Response(json.dumps({"detail": detail}).encode(), status, media_type="application/json")


def error_response(exc: BaseException) -> Response:
    """A refused DICOMweb request (fixed texts; the input is never echoed)."""
    if isinstance(exc, NotSignedIn | IdentityError):
        return Response(
            json.dumps({"detail": "authentication required"}).encode(),
            401,
            media_type="application/json",
            headers={"WWW-Authenticate": 'Cookie realm="secretum", TLS client certificate'},
        )
    if isinstance(exc, StepUpRequired):
        return _error(401, "step-up required")
    if isinstance(exc, AccessDenied | ResourceNotFound):
        # unknown and forbidden alike: the same bytes (the reason goes to the log)
        if isinstance(exc, AccessDenied):
            _log.info("dicomweb.denied", reason=exc.reason)
        return Response(_NOT_FOUND, 404, media_type="application/json")
    if isinstance(exc, MediaTypeError):
        return _error(415, "unsupported media type")
    if isinstance(exc, MalformedBody | BadQuery):
        return _error(400, str(exc))
    if isinstance(exc, Refused):
        return _error(exc.status, "request refused")
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, str(exc.detail))
    return _error(400, "invalid request")


class DicomWebRoute(APIRoute):
    """A route whose refusals (dependencies included) are DICOMweb error answers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def dicomweb_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (
                Refused,
                NotSignedIn,
                IdentityError,
                HTTPException,
                RequestValidationError,
                MalformedBody,
                MediaTypeError,
                BadQuery,
            ) as exc:
                return error_response(exc)

        return dicomweb_handler


router = APIRouter(prefix="/dicomweb", route_class=DicomWebRoute)
#: Matched before the pages (see :mod:`secretum.web.routes`): every path here is /dicomweb/.
ROUTER_FIRST = True


# -- who calls -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomCall:
    """Who calls (a session's person or an imaging node), why, and the services."""

    ctx: RequestContext
    svc: Services
    base: str  # the DICOMweb root of links (configured public address + /dicomweb)
    node: Node | None = None

    @property
    def role(self) -> Role:
        return self.ctx.actor.role


def _purpose(request: Request, role: Role) -> Purpose:
    value = request.headers.get(PURPOSE_HEADER, "").strip().lower()
    if value:
        try:
            return Purpose(value)
        except ValueError:
            raise HTTPException(400, "unknown X-Purpose-Of-Use") from None
    return DEFAULT_PURPOSE.get(role, Purpose.OPERATIONS)


async def dicomweb_call(request: Request) -> DicomCall:
    """The session (cookie, CSRF on STOW) first, else a registered node's client certificate;
    neither: 401."""
    svc = deps.services(request)
    now = deps.now(request)
    base = deps.platform(request).settings.base_url + "/dicomweb"
    caller = await deps.optional_caller(request)
    if caller is not None:
        ctx = caller.context(_purpose(request, caller.actor.role), now)
        return DicomCall(ctx, svc, base)
    node = await _node(request, svc)
    if node is not None:
        ctx = RequestContext(node.actor(), Purpose.TELERADIOLOGY, now, deps.client_address(request))
        return DicomCall(ctx, svc, base, node)
    raise NotSignedIn


async def _node(request: Request, svc: Services) -> Node | None:
    """The active imaging node whose certificate this connection presented (verified against
    the internal CA in the TLS handshake), None if none or not registered."""
    cert = client_certificate(request.scope)
    if cert is None:
        return None
    der = cert.public_bytes(Encoding.DER)
    try:
        return await run_in_threadpool(svc.imaging_nodes.by_certificate, der)
    except RowTampered:
        _log.warning("dicomweb.node_row_tampered")
        return None


def _scoped(scope: str, action: Action) -> Callable[[Request], Coroutine[Any, Any, DicomCall]]:
    """The caller, who must be a person or a node holding ``scope``. A node without it is
    refused by the policy (decided and audited like any refusal: no request is read), 403."""

    async def call(request: Request) -> DicomCall:
        found = await dicomweb_call(request)
        if found.node is not None and scope not in found.node.scopes:
            with contextlib.suppress(AccessDenied):
                await run_in_threadpool(found.svc.imaging.refuse_outside_scope, found.ctx, action)
            raise HTTPException(403, f"this node has no {scope} scope")
        return found

    return call


StoreCall = Annotated[DicomCall, Depends(_scoped("store", Action.STORE_IMAGING))]
QueryCall = Annotated[DicomCall, Depends(_scoped("query", Action.SEARCH))]
Call = Annotated[DicomCall, Depends(_scoped("retrieve", Action.READ))]


# -- DICOM JSON helpers --------------------------------------------------------------------------


def _attr(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _json(body: Any, status: int = 200) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status, media_type=DICOM_JSON)


def _study_url(call: DicomCall, study: str) -> str:
    return f"{call.base}/studies/{study}"


def _series_url(call: DicomCall, study: str, series: str) -> str:
    return f"{_study_url(call, study)}/series/{series}"


def _instance_url(call: DicomCall, study: str, series: str, sop: str) -> str:
    return f"{_series_url(call, study, series)}/instances/{sop}"


def _instance_json(call: DicomCall, m: InstanceMatch) -> dict[str, Any]:
    out = {
        "00080016": _attr("UI", m.sop_class_uid),
        "00080018": _attr("UI", m.sop_instance_uid),
        "00083002": _attr("UI", m.transfer_syntax_uid),
        "0020000D": _attr("UI", m.study_uid),
        "0020000E": _attr("UI", m.series_uid),
        "00280008": _attr("IS", m.number_of_frames),
        "00081190": _attr("UR", _instance_url(call, m.study_uid, m.series_uid, m.sop_instance_uid)),
    }
    if m.instance_number is not None:
        out["00200013"] = _attr("IS", m.instance_number)
    return dict(sorted(out.items()))


# -- STOW-RS -------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One part of a STOW body: handed to the archive (``index`` in its results) or failed
    before (``failure`` code)."""

    index: int | None = None
    failure: int | None = None
    sop_class: str | None = None
    sop_instance: str | None = None


def _code(reason: Reason) -> int:
    return FAILURE_STATUSES[reason].dicomweb_failure_reason


class _StowBody:
    """The bridge between the body (async, on the event loop) and the ingest (a worker
    thread). A task on the loop (:meth:`fill`) reads the body ahead of the ingest, so that
    reading and parsing the multipart overlap the validation and encryption of the parts
    before: whole parts wait in a queue of at most :data:`STOW_READ_AHEAD` bytes (plus the
    part being completed, so memory stays bounded whatever the size of the body). The
    ingest thread takes every waiting part at once (one thread hop per batch)."""

    def __init__(self, request: Request, reader: RelatedReader) -> None:
        self.chunks = request.stream().__aiter__()
        self.reader = reader
        self.error: MalformedBody | None = None
        self.ended = False
        self.budget = STOW_READ_AHEAD
        self._queue: list[Part] = []
        self._queued = 0
        self._filled = False  # fill() returned: nothing more will be queued
        self._arrived = asyncio.Event()  # fill -> take: parts queued, or the end
        self._room = asyncio.Event()  # take -> fill: the queue was emptied

    async def pull(self) -> list[Part] | None:
        """The next whole parts read from the body; None at its end (or on an error)."""
        while not self.ended:
            try:
                chunk = await self.chunks.__anext__()
            except StopAsyncIteration:
                self.ended = True
                try:
                    self.reader.close()
                except MalformedBody as exc:
                    self.error = exc
                return None
            except ClientDisconnect:
                self.ended = True
                self.error = MalformedBody("body cut short (client disconnected)")
                return None
            try:
                parts = self.reader.feed(chunk)
            except MalformedBody as exc:
                self.ended, self.error = True, exc
                return None
            if parts:
                return parts
        return None

    async def fill(self) -> None:
        """Read the body into the queue, pausing while it holds ``budget`` bytes or more."""
        try:
            while True:
                while self._queued >= self.budget:
                    self._room.clear()
                    await self._room.wait()
                parts = await self.pull()
                if parts is None:
                    return
                self._queue += parts
                self._queued += sum(len(part.data) for part in parts)
                self._arrived.set()
        finally:
            self._filled = True
            self._arrived.set()

    async def take(self) -> list[Part] | None:
        """Every part waiting (at least one), None once the body is read to its end."""
        while not self._queue:
            if self._filled:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        parts, self._queue, self._queued = self._queue, [], 0
        self._room.set()
        return parts

    def parts(self) -> Iterator[Part]:
        """Whole parts, in order, taken from the worker thread."""
        while True:
            got = anyio.from_thread.run(self.take)
            if got is None:
                return
            while got:
                yield got.pop(0)  # a part handed on is no longer held here


def _stow_response(
    call: DicomCall,
    outcomes: list[_Outcome],
    results: list[InstanceResult],
) -> Response:
    """The STOW-RS answer: Referenced / Failed SOP sequences and the status (200 all stored,
    202 some, 409 none)."""
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies: set[str] = set()
    for outcome in outcomes:
        cls, sop, reason = outcome.sop_class, outcome.sop_instance, outcome.failure
        stored = False
        study = series = None
        if outcome.index is not None:
            r = results[outcome.index]
            cls, sop = r.sop_class_uid, r.sop_instance_uid
            stored = r.ok
            reason = None if r.ok else r.dicomweb_failure_reason
            study, series = r.study_uid, r.series_uid
        item: dict[str, Any] = {}
        if cls:
            item["00081150"] = _attr("UI", cls)
        if sop:
            item["00081155"] = _attr("UI", sop)
        if stored:
            if study and series and sop:
                item["00081190"] = _attr("UR", _instance_url(call, study, series, sop))
                studies.add(study)
            referenced.append(item)
        else:
            item["00081197"] = _attr("US", reason if reason is not None else 0x0110)
            failed.append(item)
    body: dict[str, Any] = {}
    if len(studies) == 1:
        body["00081190"] = _attr("UR", _study_url(call, studies.pop()))
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not failed else (202 if referenced else 409)
    return _json(body, status)


async def _stow(request: Request, call: DicomCall, study: str | None) -> Response:
    if call.role is Role.PATIENT:
        raise HTTPException(403, "a patient does not store instances")
    boundary = related_boundary(request.headers.get("content-type", ""), DICOM)
    archive = call.svc.imaging
    reader = RelatedReader(boundary, max_part_bytes=archive.max_instance_bytes, default_type=DICOM)
    body = _StowBody(request, reader)
    outcomes: list[_Outcome] = []

    def instances() -> Iterator[bytes]:
        handed = 0
        for part in body.parts():
            if part.too_large:
                outcomes.append(_Outcome(failure=_code(Reason.TOO_LARGE)))
                continue
            if part.media_type != DICOM:
                outcomes.append(_Outcome(failure=_code(Reason.NOT_PART10)))
                continue
            outcomes.append(_Outcome(index=handed))
            handed += 1
            yield part.data

    def ingest() -> list[InstanceResult]:
        return archive.ingest(call.ctx, instances(), study_uid=study)

    filling = asyncio.ensure_future(body.fill())
    try:
        results = await run_in_threadpool(ingest)
    finally:
        if not filling.done():
            filling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await filling
    if body.error is not None:
        if not outcomes:
            raise body.error
        outcomes.append(_Outcome(failure=_code(Reason.TRUNCATED)))
    if not outcomes:
        raise MalformedBody("no instance in the body")
    return _stow_response(call, outcomes, results)


@router.post("/studies")
async def stow(request: Request, call: StoreCall) -> Response:
    """STOW-RS: store the instances of the body (any study)."""
    return await _stow(request, call, None)


@router.post("/studies/{study}")
async def stow_study(study: str, request: Request, call: StoreCall) -> Response:
    """STOW-RS into one study: an instance of another study fails (A900)."""
    return await _stow(request, call, study)


# -- QIDO-RS -------------------------------------------------------------------------------------

_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_PATIENT_ID, _ISSUER = "00100020", "00100021"


def _qido(request: Request) -> Qido:
    return parse_query(request.query_params.multi_items())


def _quiet(work: Callable[[], list[Any]]) -> list[Any]:
    """A query answer, or nothing for a study that does not exist or that the caller may not
    see (the archive audited the refusal): a search never tells them apart."""
    try:
        return work()
    except (AccessDenied, ResourceNotFound) as exc:
        if isinstance(exc, StepUpRequired):
            raise
        return []


def _search_studies(call: DicomCall, q: Qido) -> list[dict[str, Any]]:
    archive, ctx = call.svc.imaging, call.ctx
    uids = q.uid_list(_STUDY_UID)
    patient = q.value(_PATIENT_ID) or None
    issuer = q.value(_ISSUER) or None
    if patient is None and call.role is Role.PATIENT:
        patient = ctx.actor.user_id
    found = []
    if uids:
        for uid in uids:
            query = StudyQuery(study_uid=uid)
            found += _quiet(lambda: archive.search_studies(ctx, query=query))  # noqa: B023
        if patient is not None and issuer is None:
            found = [m for m in found if m.patient_id == patient]
    elif patient is not None and issuer is not None:
        dicom = (issuer, patient)
        found = _quiet(lambda: archive.search_studies(ctx, dicom_patient=dicom))
    elif patient is not None:
        found = _quiet(lambda: archive.search_studies(ctx, patient_id=patient))
    out = []
    for match in found:
        attrs = dict(match.attributes)
        attrs["00081190"] = _attr("UR", _study_url(call, match.study_uid))
        if q.matches(attrs, skip=(_STUDY_UID, _PATIENT_ID, _ISSUER)):
            out.append(dict(sorted(attrs.items())))
    return q.page(out)


@router.get("/studies")
async def search_studies(request: Request, call: QueryCall) -> Response:
    """QIDO-RS studies: by StudyInstanceUID (a list), PatientID (the patient's id here), or a
    patient's own; then the other keys on the unsealed attributes."""
    q = _qido(request)
    return _json(await run_in_threadpool(_search_studies, call, q))


def _search_series(call: DicomCall, q: Qido, study: str) -> list[dict[str, Any]]:
    found = _quiet(lambda: call.svc.imaging.search_series(call.ctx, study))
    out = []
    for s in found:
        attrs = dict(s.attributes)
        attrs[_STUDY_UID] = _attr("UI", s.study_uid)
        attrs["00201209"] = _attr("IS", s.instance_count)
        if s.modality and "00080060" not in attrs:
            attrs["00080060"] = _attr("CS", s.modality)
        attrs["00081190"] = _attr("UR", _series_url(call, s.study_uid, s.series_uid))
        if q.matches(attrs, skip=(_STUDY_UID,)):
            out.append(dict(sorted(attrs.items())))
    return q.page(out)


@router.get("/studies/{study}/series")
async def search_series(study: str, request: Request, call: QueryCall) -> Response:
    q = _qido(request)
    return _json(await run_in_threadpool(_search_series, call, q, study))


@router.get("/series")
async def search_all_series(request: Request, call: QueryCall) -> Response:
    """QIDO-RS series of the studies named by StudyInstanceUID (none without one)."""
    q = _qido(request)

    def work() -> list[dict[str, Any]]:
        out = []
        for uid in q.uid_list(_STUDY_UID):
            out += _search_series(call, Qido(q.keys, fuzzy=q.fuzzy), uid)
        return q.page(out)

    return _json(await run_in_threadpool(work))


def _search_instances(
    call: DicomCall, q: Qido, study: str, series: str | None
) -> list[dict[str, Any]]:
    found = _quiet(lambda: call.svc.imaging.search_instances(call.ctx, study, series))
    out = []
    for m in sorted(found, key=lambda i: (i.series_uid, i.instance_number or 0)):
        attrs = _instance_json(call, m)
        if q.matches(attrs, skip=(_STUDY_UID, _SERIES_UID) if series else (_STUDY_UID,)):
            out.append(attrs)
    return q.page(out)


@router.get("/studies/{study}/instances")
async def search_study_instances(study: str, request: Request, call: QueryCall) -> Response:
    q = _qido(request)
    return _json(await run_in_threadpool(_search_instances, call, q, study, None))


@router.get("/studies/{study}/series/{series}/instances")
async def search_series_instances(
    study: str, series: str, request: Request, call: QueryCall
) -> Response:
    q = _qido(request)
    return _json(await run_in_threadpool(_search_instances, call, q, study, series))


@router.get("/instances")
async def search_all_instances(request: Request, call: QueryCall) -> Response:
    """QIDO-RS instances of the studies named by StudyInstanceUID (none without one)."""
    q = _qido(request)

    def work() -> list[dict[str, Any]]:
        out = []
        for uid in q.uid_list(_STUDY_UID):
            out += _search_instances(call, Qido(q.keys, fuzzy=q.fuzzy), uid, None)
        return q.page(out)

    return _json(await run_in_threadpool(work))


# -- WADO-RS -------------------------------------------------------------------------------------


def _accepts(request: Request, part_type: str) -> bool:
    """The Accept header allows multipart/related of ``part_type`` (or anything)."""
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return True
    for item in accept.split(","):
        media, params = parse_parameters(item)
        if media in ("*/*", "multipart/*"):
            return True
        if media == "multipart/related" and params.get("type", part_type).lower() in (
            part_type,
            "*/*",
        ):
            return True
        if media == part_type:
            return True
    return False


async def _open(
    call: DicomCall, study: str, series: str | None, sop: str | None = None
) -> StudyReader:
    """The audited retrieval (one entry), in a worker thread: a study, a series or one
    instance (only its index row is read)."""
    return await run_in_threadpool(call.svc.imaging.open_study, call.ctx, study, series, sop)


def _stream_instances(reader: StudyReader, matches: list[InstanceMatch]) -> StreamingResponse:
    """The instances as one multipart/related body, of a length known in advance (the stored
    sizes are authenticated: a decryption that does not give them raises). Small instances
    are decrypted ahead (:data:`READ_AHEAD` at a time, in worker threads, so decryption
    overlaps sending and uses more than one core), each straight after its part head so that
    it leaves in one piece; a large one is streamed chunk by chunk."""
    boundary = new_boundary()
    heads = [
        part_head(boundary, f"{DICOM}; transfer-syntax={m.transfer_syntax_uid}", first=i == 0)
        for i, m in enumerate(matches)
    ]
    end = closing(boundary, empty=not matches)
    length = sum(map(len, heads)) + sum(m.size for m in matches) + len(end)

    def small(m: InstanceMatch) -> bool:
        return m.size <= READ_AHEAD_MAX

    def whole(i: int) -> bytes:
        out = io.BytesIO()
        out.write(heads[i])
        reader.read_instance(matches[i].sop_instance_uid, out)
        return out.getvalue()

    async def chunks(sop: str) -> AsyncIterator[bytes]:
        source = await run_in_threadpool(reader.open_instance, sop)
        try:
            while chunk := await run_in_threadpool(source.read, CHUNK):
                yield chunk
        finally:
            await run_in_threadpool(source.close)

    async def body() -> AsyncIterator[bytes]:
        ahead: dict[int, asyncio.Future[bytes]] = {}

        def read_ahead(start: int) -> None:
            for j in range(start, min(start + READ_AHEAD, len(matches))):
                if j not in ahead and small(matches[j]):
                    ahead[j] = asyncio.ensure_future(run_in_threadpool(whole, j))

        try:
            for i, m in enumerate(matches):
                read_ahead(i)
                if i in ahead:
                    yield await ahead.pop(i)
                else:
                    yield heads[i]
                    async for chunk in chunks(m.sop_instance_uid):
                        yield chunk
            yield end
        finally:
            for task in ahead.values():
                task.cancel()

    media = f'multipart/related; type="{DICOM}"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media, headers={"content-length": str(length)})


def _ordered(reader: StudyReader) -> list[InstanceMatch]:
    return sorted(reader.instances, key=lambda i: (i.series_uid, i.instance_number or 0))


@router.get("/studies/{study}")
async def retrieve_study(study: str, request: Request, call: Call) -> Response:
    """WADO-RS: every instance of the study, as stored (one audit entry)."""
    if not _accepts(request, DICOM):
        return _error(406, "multipart/related; type=application/dicom only")
    reader = await _open(call, study, None)
    return _stream_instances(reader, _ordered(reader))


@router.get("/studies/{study}/series/{series}")
async def retrieve_series(study: str, series: str, request: Request, call: Call) -> Response:
    if not _accepts(request, DICOM):
        return _error(406, "multipart/related; type=application/dicom only")
    reader = await _open(call, study, series)
    return _stream_instances(reader, _ordered(reader))


def _one(reader: StudyReader, sop: str) -> InstanceMatch:
    for m in reader.instances:
        if m.sop_instance_uid == sop:
            return m
    raise ResourceNotFound("no such instance")


@router.get("/studies/{study}/series/{series}/instances/{sop}")
async def retrieve_instance(
    study: str, series: str, sop: str, request: Request, call: Call
) -> Response:
    if not _accepts(request, DICOM):
        return _error(406, "multipart/related; type=application/dicom only")
    reader = await _open(call, study, series, sop)
    return _stream_instances(reader, [_one(reader, sop)])


def _bulk_uri(base: str) -> Callable[[str, str, str, str], str]:
    def uri(study: str, series: str, sop: str, tag: str) -> str:
        return f"{base}/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}"

    return uri


async def _metadata(
    call: DicomCall, study: str, series: str | None, sop: str | None = None
) -> Response:
    found = await run_in_threadpool(
        lambda: call.svc.imaging.series_metadata(
            call.ctx, study, series, bulk_uri=_bulk_uri(call.base)
        )
    )
    if sop is not None:
        found = [m for m in found if sop in m.get(_SOP_UID, {}).get("Value", [])]
        if not found:
            raise ResourceNotFound("no such instance")
    return _json(found)


@router.get("/studies/{study}/metadata")
async def study_metadata(study: str, call: Call) -> Response:
    """WADO-RS metadata of every instance (DICOM JSON; bulk data as BulkDataURI)."""
    return await _metadata(call, study, None)


@router.get("/studies/{study}/series/{series}/metadata")
async def series_metadata(study: str, series: str, call: Call) -> Response:
    return await _metadata(call, study, series)


@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata")
async def instance_metadata(study: str, series: str, sop: str, call: Call) -> Response:
    return await _metadata(call, study, series, sop)


def _frame_numbers(text: str) -> list[int]:
    numbers = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or len(item) > 9 or int(item) < 1:
            raise BadQuery("frame numbers are positive integers")
        numbers.append(int(item))
    if not numbers or len(numbers) > 10_000:
        raise BadQuery("one to 10000 frame numbers")
    return numbers


def _octets(
    request: Request, pieces: list[bytes], transfer_syntax: str, *, single: bool
) -> Response:
    """Frames or bulk data: multipart/related of application/octet-stream parts (with their
    transfer syntax), or the bytes alone when the client asked for application/octet-stream
    and there is one piece."""
    accept = request.headers.get("accept", "")
    media_types = [parse_parameters(a)[0] for a in accept.split(",") if a.strip()]
    if (
        single
        and len(pieces) == 1
        and OCTETS in media_types
        and ("multipart/related" not in media_types)
    ):
        return Response(pieces[0], media_type=OCTETS)
    boundary = new_boundary()
    out = bytearray()
    part_type = f"{OCTETS}; transfer-syntax={transfer_syntax}"
    for n, piece in enumerate(pieces):
        out += part_head(boundary, part_type, first=n == 0)
        out += piece
    out += closing(boundary, empty=not pieces)
    media = f'multipart/related; type="{OCTETS}"; boundary={boundary}'
    return Response(bytes(out), media_type=media)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}")
async def retrieve_frames(
    study: str, series: str, sop: str, frames: str, request: Request, call: Call
) -> Response:
    """WADO-RS frames (1-based), as stored: native pixels raw, compressed frames as they are.
    One audited opening of the series for the request, none per frame."""
    numbers = _frame_numbers(frames)
    if not _accepts(request, OCTETS):
        return _error(406, "multipart/related; type=application/octet-stream only")
    reader = await _open(call, study, series, sop)
    match = _one(reader, sop)

    def read() -> list[bytes]:
        return [reader.read_frame(sop, n) for n in numbers]

    pieces = await run_in_threadpool(read)
    return _octets(request, pieces, match.transfer_syntax_uid, single=True)


def _bulk_value(data: bytes, tag: str) -> bytes | None:
    ds = pydicom.dcmread(io.BytesIO(data))
    elem = ds.get(int(tag, 16))
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return None


@router.get("/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}")
async def retrieve_bulk(
    study: str, series: str, sop: str, tag: str, request: Request, call: Call
) -> Response:
    """WADO-RS bulk data of a BulkDataURI: pixel data (every frame, as stored) or a long
    value of the instance's top level."""
    if len(tag) != 8 or any(c not in "0123456789ABCDEFabcdef" for c in tag):
        raise ResourceNotFound("no such bulk data")
    reader = await _open(call, study, series, sop)
    match = _one(reader, sop)
    if tag.upper() == "7FE00010":

        def frames() -> list[bytes]:
            return [reader.read_frame(sop, n) for n in range(1, match.number_of_frames + 1)]

        pieces = await run_in_threadpool(frames)
        if not match.transfer_syntax_uid.startswith("1.2.840.10008.1.2.4") and len(pieces) > 1:
            pieces = [b"".join(pieces)]
        return _octets(request, pieces, match.transfer_syntax_uid, single=True)

    def value() -> bytes | None:
        return _bulk_value(reader.instance_bytes(sop), tag)

    found = await run_in_threadpool(value)
    if found is None:
        raise ResourceNotFound("no such bulk data")
    return _octets(request, [found], match.transfer_syntax_uid, single=True)
