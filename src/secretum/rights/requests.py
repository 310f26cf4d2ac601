"""Rectification (GDPR art. 16) and restriction (art. 18) requests of the patient.

A rectification request is a FHIR Task (``code`` change, ``status`` requested, ``for`` the
patient, ``focus`` the resource to correct), its text in ``description``: sealed with the
patient's key like any resource, in the patient's record (so it is exported and the care team
reads it through the guarded services). Each practitioner of the care team gets a notice (ids
only). A restriction sets the flag the policy reads (``Facts.restricted_processing``) through
the :class:`~secretum.rights.ports.RestrictionFlags` port.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.model import Action, Resource, Sensitivity
from secretum.audit.model import EventAction, EventType
from secretum.notices.store import NoticeKind, notify
from secretum.records.fhir import (
    WRITABLE_TYPES,
    FhirRecord,
    InvalidResource,
    UnprocessableResource,
    check_id,
    validate,
)
from secretum.records.service import RecordService
from secretum.rights.ports import CareTeamOf, RestrictionFlags

MAX_TEXT = 10_000
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"


def rectification_task(
    task_id: str, patient_id: str, text: str, now: datetime, focus: str | None
) -> dict[str, Any]:
    """The FHIR Task of a rectification request (validated)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "status": "requested",
        "intent": "proposal",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "change"}]},
        "description": text,
        "for": {"reference": f"Patient/{patient_id}"},
        "requester": {"reference": f"Patient/{patient_id}"},
        "authoredOn": now.isoformat(),
    }
    if focus is not None:
        task["focus"] = {"reference": focus}
    return validate(task, "Task")


def request_rectification(
    records: RecordService,
    care_team_of: CareTeamOf,
    ctx: RequestContext,
    patient_id: str,
    text: str,
    *,
    about: tuple[str, str] | None = None,
) -> FhirRecord:
    """Ask the care team to correct the record (``about``: the ``(type, id)`` concerned)."""
    attempt = Attempt(ctx, EventType.PATIENT_RECORD, "create", EventAction.CREATE)

    def work(conn: Connection) -> FhirRecord:
        pid = check_id(patient_id, "patient")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise InvalidResource(f"the request text must hold 1 to {MAX_TEXT} characters")
        if records.repo.find(conn, pid) is None:
            raise UnprocessableResource("no such Patient")
        sensitivity, focus = Sensitivity.NORMAL, None
        if about is not None:
            kind, rid = about
            row = records.repo.find(conn, check_id(rid))
            if kind not in WRITABLE_TYPES or row is None or row.resource_type != kind:
                raise UnprocessableResource("the resource to correct does not exist")
            if row.patient_id != pid:
                raise UnprocessableResource("the resource to correct is not about this patient")
            sensitivity, focus = row.sensitivity, f"{kind}/{rid}"
        task_id = records.fresh_id(conn, None)
        attempt.target("Task", task_id)
        resource = Resource("Patient", pid, pid, sensitivity)
        records.door.authorize(conn, attempt, Action.RECTIFY, resource)
        attempt.target("Task", task_id, pid)
        task = rectification_task(task_id, pid, text, ctx.now, focus)
        saved = records.write(conn, task, None, pid, sensitivity, ctx.now)
        for practitioner in sorted(set(care_team_of(conn, pid, ctx.now))):
            notify(
                conn,
                practitioner,
                NoticeKind.RECTIFICATION_REQUESTED,
                ctx.now,
                patient_id=pid,
                task_id=task_id,
            )
        return saved

    return records.door.run(attempt, work)


def set_restriction(
    records: RecordService,
    flags: RestrictionFlags,
    ctx: RequestContext,
    patient_id: str,
    restricted: bool = True,
) -> None:
    """Restrict (or lift the restriction of) the processing of the patient's data."""
    attempt = Attempt(ctx, EventType.PATIENT_RECORD, "update", EventAction.UPDATE)

    def work(conn: Connection) -> None:
        pid = check_id(patient_id, "patient")
        records.door.authorize(conn, attempt, Action.RESTRICT, Resource("Patient", pid, pid))
        attempt.target("Patient", pid, pid)
        flags.set_restricted(conn, pid, restricted, ctx.now)

    records.door.run(attempt, work)
