"""The FHIR R4 (4.3.0 / R4B) JSON API (``/fhir``) over the guarded record services.

Interactions: create ``POST /fhir/{type}``, read ``GET /fhir/{type}/{id}``, vread
``GET /fhir/{type}/{id}/_history/{vid}``, history ``GET /fhir/{type}/{id}/_history``, update
``PUT /fhir/{type}/{id}`` (``If-Match: W/"<version>"`` required: no lost update on a medical
record), search ``GET /fhir/{type}?patient=<id>``, ``GET /fhir/Patient/{id}/$everything``, and
``GET /fhir/DocumentReference/{id}/$content`` (the file of a document, decrypted as it streams).

Authentication is the browser session (cookie) and, for POST and PUT, its CSRF token in the
``X-CSRF-Token`` header. The purpose of use comes from ``X-Purpose-Of-Use`` (a Secretum purpose:
``teleconsultation``, ``teleradiology``, ``remote-monitoring``, ``sharing``, ``emergency``...);
default ``teleconsultation`` for practitioners, ``patient-request`` for patients. A POST of a
Patient may carry its ``id`` (the patient's account id); other ids are the server's.

Every answer is ``application/fhir+json``; every error an OperationOutcome with the status of
its :class:`~secretum.records.fhir.FhirError` (400, 403, 404, 405, 410, 412, 413, 415, 422),
401 when not signed in or when the policy asks for a fresh second factor (step-up), and never
an echo of the input.

**A refusal says nothing about other people.** Every request the policy refuses gets the one
same answer, :data:`FORBIDDEN` (403, byte for byte): the policy's reason (``deny.no-consent``,
``deny.not-own-record``...) is not sent, since it differs between a patient who exists and one
who does not (a lookup by e-mail or INS would then tell who is a patient here). The reason is
logged (``fhir.denied``, with the request id) and the attempt audited as a failure naming the
resource asked for. Reads of an id keep FHIR's 404 for an id that names nothing: an id is 128
random bits the server handed out, so telling that it exists tells nothing about a person.

Links (``Location``, a Bundle's ``fullUrl``) start with the configured public address
(``public_url``), never with the request's ``Host`` header, which the client writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from secretum.access.context import RequestContext
from secretum.access.errors import Refused
from secretum.access.model import Actor, Purpose, Role
from secretum.identity.errors import IdentityError
from secretum.logs import get_logger
from secretum.records.fhir import (
    MAX_RESOURCE_BYTES,
    FhirRecord,
    FileTooLarge,
    InvalidResource,
    UnsupportedContentType,
    bundle,
    operation_outcome,
    parse_json,
)
from secretum.records.search import IDENTIFIER_KINDS
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps, refusals
from secretum.web.deps import NotSignedIn
from secretum.web.routes.patient import download

FHIR_JSON = "application/fhir+json"
PURPOSE_HEADER = "x-purpose-of-use"
JSON_TYPES = ("application/fhir+json", "application/json")
_log = get_logger("secretum.web.fhir")


def fhir_json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome(status: int, code: str, diagnostics: str) -> Response:
    return fhir_json(operation_outcome(code, diagnostics), status)


def error_response(exc: BaseException) -> Response:
    """The OperationOutcome of a refused request (fixed texts: the input is never echoed; a
    policy refusal is :data:`~secretum.web.refusals.FORBIDDEN`, its reason logged, not sent:
    :func:`~secretum.web.refusals.fhir_refusal`)."""
    if isinstance(exc, NotSignedIn | IdentityError):
        return outcome(401, "login", "sign-in required")
    if isinstance(exc, Refused):
        status, body = refusals.fhir_refusal(exc)
        return fhir_json(body, status)
    if isinstance(exc, HTTPException):
        code = "forbidden" if exc.status_code == 403 else "invalid"
        return outcome(exc.status_code, code, "request refused")
    return outcome(400, "invalid", "invalid request parameters")


class FhirRoute(APIRoute):
    """A route whose refusals (dependencies included) are OperationOutcomes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (
                Refused,
                NotSignedIn,
                IdentityError,
                HTTPException,
                RequestValidationError,
            ) as exc:
                return error_response(exc)

        return fhir_handler


router = APIRouter(prefix="/fhir", route_class=FhirRoute)
#: Matched before the pages (see :mod:`secretum.web.routes`): every path here is under /fhir/.
ROUTER_FIRST = True


DEFAULT_PURPOSE = {
    Role.PATIENT: Purpose.PATIENT_REQUEST,
    Role.PRACTITIONER: Purpose.TELECONSULTATION,
}


def purpose(request: Request, caller: deps.Caller) -> Purpose:
    """The purpose of use: the header, else the caller's role's default."""
    value = request.headers.get(PURPOSE_HEADER, "").strip().lower()
    if value:
        try:
            return Purpose(value)
        except ValueError:
            raise InvalidResource("unknown X-Purpose-Of-Use", code="value") from None
    return DEFAULT_PURPOSE.get(caller.actor.role, Purpose.OPERATIONS)


@dataclass(frozen=True)
class FhirCall:
    """Who calls (signed in), why (the purpose of use), the services, and the time."""

    caller: deps.Caller
    why: Purpose
    svc: Services
    now: datetime

    @property
    def actor(self) -> Actor:
        return self.caller.actor

    @property
    def address(self) -> str | None:
        return pages.address(self.caller)

    @property
    def ctx(self) -> RequestContext:
        """The request context of the use case this call makes."""
        return self.caller.context(self.why, self.now)


async def fhir_call(request: Request) -> FhirCall:
    """The one dependency of the FHIR routes (``read`` does the same in its worker thread,
    :func:`~secretum.web.deps.caller_blocking`): the session first (401 without one), then the
    purpose. One dependency rather than four: FastAPI's resolution of each costs more than
    what it does, on the busiest routes."""
    caller = await deps.optional_caller(request)
    if caller is None:
        raise NotSignedIn
    return FhirCall(caller, purpose(request, caller), deps.services(request), deps.now(request))


Call = Annotated[FhirCall, Depends(fhir_call)]


def base_url(request: Request) -> str:
    """The FHIR base of links: the configured public address (``public_url``), never the
    request's ``Host`` header (the client's to write: a forged one would plant its address in
    the links the client, and anyone it passes them to, follows)."""
    return deps.platform(request).settings.base_url + "/fhir"


def record_response(request: Request, record: FhirRecord, status: int = 200) -> Response:
    """A resource with its version as ETag and its Last-Modified (and Location when created)."""
    headers = {
        "ETag": f'W/"{record.version}"',
        "Last-Modified": format_datetime(record.last_updated, usegmt=True),
    }
    if status == 201:
        headers["Location"] = (
            f"{base_url(request)}/{record.resource_type}/{record.resource_id}"
            f"/_history/{record.version}"
        )
    return fhir_json(record.resource, status, headers)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's FHIR JSON object (415 for another media type, 413 past the limit)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES:
        raise UnsupportedContentType("send application/fhir+json")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_RESOURCE_BYTES:
        raise FileTooLarge(f"a resource is at most {MAX_RESOURCE_BYTES} bytes")
    return parse_json(await request.body())


def version_of(value: str, what: str = "version") -> int:
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise InvalidResource(f"{what} must be a positive version number")
    return int(text)


# -- operations first (their paths are literal where the generic ones have parameters) --------


@router.get("/Patient/{patient_id}/$everything")
def everything(patient_id: str, request: Request, call: Call) -> Response:
    """The patient's whole record as a Bundle: the patient's export (GDPR, after a step-up),
    or for a practitioner every resource the policy lets them see."""
    actor: Actor = call.actor
    if actor.role is Role.PATIENT:
        export = call.svc.rights.export(
            call.ctx,
            patient_id,
            base_url=base_url(request),
        )
        return fhir_json(export.bundle)
    found = call.svc.records.search(call.ctx, patient_id)
    return fhir_json(
        bundle([r.resource for r in found], "searchset", base_url=base_url(request), now=call.now)
    )


@router.get("/DocumentReference/{document_id}/$content")
def content(document_id: str, call: Call) -> StreamingResponse:
    """The file of a DocumentReference (audited as a read)."""
    opened = call.svc.documents.open_document(call.ctx, document_id)
    return download(opened)


# -- the RESTful interactions ---------------------------------------------------------------


@router.post("/{resource_type}")
async def create(resource_type: str, request: Request, call: Call) -> Response:
    """FHIR create: 201 with Location and ETag."""
    body = await json_body(request)
    if body.get("resourceType") != resource_type:
        raise InvalidResource(f"resourceType must be {resource_type}")
    chosen_id = body.get("id") if resource_type == "Patient" else None
    record = await run_in_threadpool(
        call.svc.records.create,
        call.ctx,
        body,
        resource_id=chosen_id if isinstance(chosen_id, str) else None,
    )
    return record_response(request, record, 201)


def _lookup(identifier: str) -> tuple[str, str]:
    """``system|value`` of an indexed identifier system: its blind-index kind and the value."""
    system, sep, value = identifier.partition("|")
    kind = IDENTIFIER_KINDS.get(system)
    if not sep or kind is None or not value:
        raise InvalidResource("identifier=<system>|<value>, system an INS OID", code="value")
    return kind, value


@router.get("/{resource_type}")
def search(
    resource_type: str,
    request: Request,
    call: Call,
    patient: str = "",
    identifier: str = "",
    email: str = "",
) -> Response:
    """FHIR search by patient: ``?patient=<id>`` (or ``Patient/<id>``); for Patient, ``_id``,
    or a lookup through the blind index: ``?identifier=<INS system>|<INS>``, ``?email=``
    (neither value is stored in clear, nor logged: the request log has no query strings)."""
    target = (patient or request.query_params.get("_id", "")).removeprefix("Patient/")
    if resource_type == "Patient" and not target and (identifier or email):
        kind, value = ("email", email) if email else _lookup(identifier)
        found = call.svc.records.find_patients(call.ctx, kind, value)
        return fhir_json(
            bundle(
                [r.resource for r in found], "searchset", base_url=base_url(request), now=call.now
            )
        )
    if not target:
        raise InvalidResource("search by patient: ?patient=<id>", code="required")
    found = call.svc.records.search(call.ctx, target, resource_type)
    return fhir_json(
        bundle([r.resource for r in found], "searchset", base_url=base_url(request), now=call.now)
    )


@router.get("/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, request: Request) -> Response:
    """FHIR read: the current version. The busiest route: the session lookup and its one read
    path (the door's synchronous read: a connection, maybe a key unwrap through the KMS, the
    group commit of its audit entry) run in one worker thread, never on the event loop: one
    hand-over per request (what :func:`fhir_call` does, then the read)."""

    def signed_in_read() -> FhirRecord:
        caller = deps.caller_blocking(request)
        ctx = caller.context(purpose(request, caller), deps.now(request))
        return deps.services(request).records.read(ctx, resource_type, resource_id)

    record = await run_in_threadpool(signed_in_read)
    return record_response(request, record)


@router.get("/{resource_type}/{resource_id}/_history")
def history(
    resource_type: str,
    resource_id: str,
    request: Request,
    call: Call,
) -> Response:
    """FHIR history of one resource: a Bundle of every version, newest first."""
    versions = call.svc.records.history(call.ctx, resource_type, resource_id)
    return fhir_json(bundle([r.resource for r in versions], "history", now=call.now))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(
    resource_type: str,
    resource_id: str,
    version_id: str,
    request: Request,
    call: Call,
) -> Response:
    """FHIR vread: one version."""
    record = call.svc.records.read(
        call.ctx,
        resource_type,
        resource_id,
        version=version_of(version_id),
    )
    return record_response(request, record)


@router.put("/{resource_type}/{resource_id}")
async def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    call: Call,
) -> Response:
    """FHIR update: a new version, if ``If-Match`` names the current one (412 otherwise, 428
    without it)."""
    if_match = request.headers.get("if-match")
    if not if_match:
        return outcome(428, "required", "If-Match with the current version is required")
    expected = version_of(if_match, "If-Match")
    body = await json_body(request)
    record = await run_in_threadpool(
        call.svc.records.update,
        call.ctx,
        resource_type,
        resource_id,
        body,
        if_match=expected,
    )
    return record_response(request, record)
