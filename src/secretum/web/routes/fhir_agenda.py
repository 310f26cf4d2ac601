"""The agenda in the FHIR API (``/fhir``): Schedule, Slot, Appointment and Encounter, served by
the agenda's use cases (:class:`~secretum.agenda.service.AgendaService`: one policy decision and
one audit entry each) and shaped by :mod:`secretum.agenda.fhir`. Same session, CSRF, purpose
header, errors (OperationOutcomes; one fixed 403 for every policy refusal) and links as the
record routes of :mod:`secretum.web.routes.fhir_api`, whose route class and dependency these
share. Matched before the generic ``/fhir/{type}`` routes (module order).

* ``GET /fhir/Schedule/{practitioner_id}``: the practitioner's schedule (404 if they publish
  nothing); ``GET /fhir/Slot?schedule=Schedule/<id>[&start=ge<date>&start=le<date>]``: their
  free slots (7 days from today by default, at most 62).
* ``GET /fhir/Appointment/{id}``: for its patient (``patient-request``) or their care team (a
  purpose of care, with consent). ``GET /fhir/Appointment?patient=<me>``: a patient's own;
  ``?practitioner=<me>[&date=<day>]``: a practitioner's week from ``date``.
* ``POST /fhir/Appointment``: a patient books (``participant`` names ``Practitioner/<id>``,
  ``start`` a free slot's instant; purpose ``teleconsultation``, which needs their consent).
  ``PUT /fhir/Appointment/{id}`` with ``status: cancelled`` cancels, with another ``start``
  moves (up to the change delay).
* ``GET /fhir/Encounter?appointment=<id>``: the consultation's Encounter (class VR for video:
  planned, then finished). The Encounter a held consultation's note put into the record has
  the appointment's id and is read like any record resource (``GET /fhir/Encounter/{id}``,
  ``?patient=``), by the generic routes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from secretum.agenda import fhir
from secretum.agenda.model import MAX_RANGE_DAYS, Appointment
from secretum.records.fhir import InvalidResource, ResourceNotFound, bundle, check_id
from secretum.web.routes import fhir_api
from secretum.web.routes.fhir_api import Call, FhirRoute, base_url, fhir_json, json_body
from secretum.web.templating import clinic_zone

router = APIRouter(prefix="/fhir", route_class=FhirRoute, include_in_schema=False)
#: Matched before the generic routes of :mod:`~secretum.web.routes.fhir_api` (module order).
ROUTER_FIRST = True
#: Days of slots a search gives without ``start`` bounds.
DEFAULT_DAYS = 7


def _searchset(request: Request, call: Call, resources: list[dict[str, Any]]) -> Response:
    return fhir_json(bundle(resources, "searchset", base_url=base_url(request), now=call.now))


def _ref(value: str, kind: str) -> str:
    """An id from ``<id>`` or ``<kind>/<id>`` (400 otherwise)."""
    return check_id(value.removeprefix(f"{kind}/"), kind.lower())


def _day(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidResource(f"{what}: a date (YYYY-MM-DD)", code="value") from None


def _range(request: Request, call: Call) -> tuple[date, date]:
    """``start=ge<date>&start=le<date>`` (clinic days, inclusive); 7 days from today by default."""
    today = call.now.astimezone(clinic_zone(request)).date()
    first, last = today, today + timedelta(days=DEFAULT_DAYS - 1)
    for value in request.query_params.getlist("start"):
        if value.startswith("ge"):
            first = _day(value[2:], "start")
        elif value.startswith("le"):
            last = _day(value[2:], "start")
        else:
            raise InvalidResource("start=ge<date> and start=le<date>", code="value")
    return first, last


# -- Schedule and Slot ------------------------------------------------------------------------


@router.get("/Schedule/{practitioner_id}")
def read_schedule(practitioner_id: str, call: Call) -> Response:
    """The practitioner's Schedule (their public hours exist), or 404."""
    pid = check_id(practitioner_id, "id")
    if not call.svc.agenda.schedule(call.ctx, pid):
        raise ResourceNotFound("no Schedule with this id")
    return fhir_json(fhir.schedule(pid, call.now, call.now + timedelta(days=365)))


@router.get("/Slot")
def search_slots(request: Request, call: Call, schedule: str = "") -> Response:
    """Free slots of one schedule (a practitioner) over a range of clinic days."""
    if not schedule:
        raise InvalidResource("search by schedule: ?schedule=Schedule/<id>", code="required")
    pid = _ref(schedule, "Schedule")
    first, last = _range(request, call)
    if not first <= last or (last - first).days >= MAX_RANGE_DAYS:
        raise InvalidResource(f"ask for 1 to {MAX_RANGE_DAYS} days", code="value")
    found = call.svc.agenda.free_slots(call.ctx, pid, first, last)
    return _searchset(request, call, [fhir.slot(s) for s in found])


# -- Appointment --------------------------------------------------------------------------------


def _appointment_response(request: Request, value: Appointment, status: int = 200) -> Response:
    headers = {}
    if status == 201:
        headers["Location"] = f"{base_url(request)}/Appointment/{value.appointment_id}"
    return fhir_json(fhir.appointment(value), status, headers)


@router.get("/Appointment/{appointment_id}")
async def read_appointment(appointment_id: str, request: Request, call: Call) -> Response:
    aid = check_id(appointment_id, "id")
    found = await run_in_threadpool(call.svc.agenda.appointment, call.ctx, aid)
    return _appointment_response(request, found)


@router.get("/Appointment")
def search_appointments(
    request: Request, call: Call, patient: str = "", practitioner: str = "", date: str = ""
) -> Response:
    """A patient's appointments (``?patient=``: theirs, or for their care team), a
    practitioner's own week (``?practitioner=``)."""
    agenda = call.svc.agenda
    if patient:
        mine = agenda.consultations(call.ctx, _ref(patient, "Patient"))
        found = [e.appointment for e in (*mine.upcoming, *reversed(mine.past))]
        return _searchset(request, call, [fhir.appointment(a) for a in found])
    if practitioner:
        if _ref(practitioner, "Practitioner") != call.actor.user_id:
            raise InvalidResource("practitioner=<your own id>", code="value")
        today = call.now.astimezone(clinic_zone(request)).date()
        first = _day(date, "date") if date else today
        entries = agenda.agenda(call.ctx, first, days=7)
        return _searchset(request, call, [fhir.appointment(e.appointment) for e in entries])
    raise InvalidResource("search by ?patient=<id> or ?practitioner=<id>", code="required")


def _booking(body: dict[str, Any]) -> tuple[str, datetime]:
    """The practitioner and start of a booking request (an Appointment)."""
    start = body.get("start")
    if not isinstance(start, str):
        raise InvalidResource("Appointment.start is required", code="required")
    try:
        at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidResource("Appointment.start: an instant", code="value") from None
    if at.tzinfo is None:
        raise InvalidResource("Appointment.start: an instant with its offset", code="value")
    for p in body.get("participant") or []:
        ref = ((p or {}).get("actor") or {}).get("reference", "")
        if isinstance(ref, str) and ref.startswith("Practitioner/"):
            return _ref(ref, "Practitioner"), at
    raise InvalidResource("a participant must be Practitioner/<id>", code="required")


@router.post("/Appointment")
async def book(request: Request, call: Call) -> Response:
    """A patient books a free slot for themselves (purpose teleconsultation: their consent)."""
    body = await json_body(request)
    if body.get("resourceType") != "Appointment":
        raise InvalidResource("resourceType must be Appointment")
    practitioner_id, at = _booking(body)
    booked = await run_in_threadpool(call.svc.agenda.book, call.ctx, practitioner_id, at)
    return _appointment_response(request, booked, 201)


@router.put("/Appointment/{appointment_id}")
async def change(appointment_id: str, request: Request, call: Call) -> Response:
    """``status: cancelled`` cancels; another ``start`` moves (a new appointment, 201)."""
    aid = check_id(appointment_id, "id")
    body = await json_body(request)
    if body.get("resourceType") != "Appointment" or body.get("id") != aid:
        raise InvalidResource("an Appointment whose id is the request's")
    agenda = call.svc.agenda
    if body.get("status") == "cancelled":
        was = await run_in_threadpool(agenda.cancel, call.ctx, aid)
        return _appointment_response(request, was)
    _practitioner, at = _booking(body)
    moved = await run_in_threadpool(agenda.move, call.ctx, aid, at)
    return _appointment_response(request, moved, 201)


# -- Encounter ----------------------------------------------------------------------------------


@router.get("/Encounter")
def search_encounters(request: Request, call: Call, appointment: str = "") -> Response:
    """``?appointment=<id>``: the consultation's Encounter; other searches are the records'."""
    if not appointment:
        return fhir_api.search("Encounter", request, call, patient=request.query_params.get(
            "patient", ""))  # fmt: skip
    aid = _ref(appointment, "Appointment")
    found = call.svc.agenda.encounter(call.ctx, aid)
    return _searchset(request, call, [fhir.encounter(found)])
