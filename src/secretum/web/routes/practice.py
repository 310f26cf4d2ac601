"""The practitioner's pages (``/practice``): my patients, a patient's record, adding an
observation or a document, recording a paper consent, opening the patient's file.
Break-the-glass is in :mod:`secretum.web.routes.practice_emergency`.

Every route is for a signed-in practitioner; whether they may touch *this* patient's data is the
policy's call inside the record and consent services (care team, consent for the purpose,
naming for restricted data, break-the-glass), never the route's. The purpose of use is a query
or form field (default: teleradiology for radiologists, teleconsultation otherwise).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request
from fastapi import UploadFile as FormFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from starlette.datastructures import UploadFile

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role, Sensitivity
from secretum.audit.model import ID_PATTERN
from secretum.bootstrap import Platform
from secretum.consent.service import PaperForm, PaperFormDate, PaperFormPredatesWithdrawal
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import LANGUAGES
from secretum.policy.rules import CARE_PURPOSES
from secretum.records.directory import search_my_patients
from secretum.records.documents import CONTENT_TYPES, CheckedUpload
from secretum.records.fhir import instant
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.deps import Caller
from secretum.web.notice_mail import send_consent_recorded
from secretum.web.routes.patient import download
from secretum.web.templating import language, render

router = APIRouter(prefix="/practice", route_class=pages.CarePageRoute, include_in_schema=False)

Svc = Annotated[Services, Depends(deps.services_dep)]
Plat = Annotated[Platform, Depends(deps.platform_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
FormStr = Annotated[str, Form()]
RECORD = "/practice/patients/{patient_id}"

#: Observations the form offers: LOINC code, display, UCUM unit, plausible range.
OBSERVATIONS: dict[str, tuple[str, str, str, Decimal, Decimal]] = {
    "systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]", Decimal(40), Decimal(300)),
    "diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]", Decimal(20), Decimal(200)),
    "heart-rate": ("8867-4", "Heart rate", "/min", Decimal(20), Decimal(300)),
    "glycemia": ("2339-0", "Glucose [Mass/volume] in Blood", "g/L", Decimal("0.1"), Decimal(10)),
    "weight": ("29463-7", "Body weight", "kg", Decimal("0.3"), Decimal(400)),
    "temperature": ("8310-5", "Body temperature", "Cel", Decimal(25), Decimal(45)),
}
#: Quantity.unit (for people) of each UCUM code (Quantity.code, for machines).
UNIT_DISPLAY = {"mm[Hg]": "mmHg", "/min": "/min", "Cel": "°C"}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
#: Purposes a practitioner reads under: care (with the patient's consent), or emergency (under a
#: break-the-glass grant).
READ_PURPOSES = CARE_PURPOSES | {Purpose.EMERGENCY}
PURPOSES = tuple(p for p in Purpose if p in READ_PURPOSES)
CONSENT_PURPOSES = (
    Purpose.TELECONSULTATION,
    Purpose.TELERADIOLOGY,
    Purpose.REMOTE_MONITORING,
    Purpose.SHARING,
)
GENDERS = ("female", "male", "other", "unknown")


async def _practitioner(
    caller: Annotated[Caller, Depends(deps.role(Role.PRACTITIONER))],
) -> Caller:
    return caller


PractitionerCaller = Annotated[Caller, Depends(_practitioner)]


def default_purpose(actor: Actor) -> Purpose:
    return Purpose.TELERADIOLOGY if actor.specialty == "radiology" else Purpose.TELECONSULTATION


def purpose_of(value: str, actor: Actor) -> Purpose:
    """A care purpose from a form or query (the default for the specialty if empty)."""
    if not value:
        return default_purpose(actor)
    try:
        purpose = Purpose(value)
    except ValueError:
        raise pages.PageError(400, "error.purpose") from None
    if purpose not in READ_PURPOSES:
        raise pages.PageError(400, "error.purpose")
    return purpose


def sensitivity_of(value: str) -> Sensitivity:
    if value not in ("", "normal", "restricted"):
        raise pages.PageError(400, "error.invalid")
    return Sensitivity.RESTRICTED if value == "restricted" else Sensitivity.NORMAL


#: The section (tab) of the record page each confirmation belongs to.
TAB_OF = {"observation": "measurements", "document": "documents", "referred": "actions"}


def to_record(patient_id: str, purpose: Purpose, done: str) -> RedirectResponse:
    """Back to the record, on the section (tab) where the change shows."""
    response = pages.done(f"/practice/patients/{patient_id}?purpose={purpose}", done)
    tab = "consents" if done.startswith("consent-") else TAB_OF.get(done, "summary")
    response.headers["location"] += f"#{tab}"
    return response


# -- my patients --------------------------------------------------------------------------------


def patients_page(
    request: Request, caller: Caller, svc: Services, now: datetime, query: str = ""
) -> HTMLResponse:
    """The patients whose care team I am in; each one's name when the policy lets me read it
    (one guarded, audited read each), else the reason why not; only those matching ``query``
    (a name, an INS or an e-mail: see :func:`secretum.records.directory.search_my_patients`)."""
    purpose = default_purpose(caller.actor)
    rows: list[dict[str, Any]] = []
    for patient_id in svc.care_reads.patients_of(caller.user_id, now):
        via = svc.care_reads.care_relationships_of(patient_id, caller.user_id, now)
        row: dict[str, Any] = {"id": patient_id, "patient": None, "reason": None, "via": via}
        try:
            record = svc.records.read(
                caller.context(purpose, now),
                "Patient",
                patient_id,
            )
            row["patient"] = pages.patient_view(record.resource)
        except pages.HANDLED as exc:
            row["reason"] = pages.error_key(exc)
        rows.append(row)
    searched = bool(query.strip())
    if searched:
        names = {r["id"]: (r["patient"] or {}).get("name", "") for r in rows}
        wanted = search_my_patients(svc.records, caller.context(purpose, now), names, query)
        rows = [r for r in rows if r["id"] in wanted]
    return render(
        request,
        "practice_patients.html",
        rows=rows,
        query=query.strip()[:200],
        searched=searched,
        names=svc.directory.staff({r.source_id for row in rows for r in row["via"] if r.source_id}),
        purpose=str(purpose),
        grants=svc.care_reads.grants_held(caller.user_id, now),
        **pages.ctx(request),
    )


@router.get("/patients", response_class=HTMLResponse)
def my_patients(caller: PractitionerCaller, request: Request, svc: Svc, now: Now) -> HTMLResponse:
    """My patients (see :func:`patients_page`)."""
    return patients_page(request, caller, svc, now)


@router.post("/patients", response_class=HTMLResponse, **pages.back_to("/practice/patients"))
def search_patients(
    caller: PractitionerCaller, request: Request, svc: Svc, now: Now, q: FormStr = ""
) -> HTMLResponse:
    """Search my patients by name, INS or e-mail. A POST, so that the words searched (a name,
    an INS) stay out of URLs, browser history and access logs."""
    return patients_page(request, caller, svc, now, q)


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_record(
    patient_id: str,
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
    purpose: str = "",
    done: str = "",
) -> HTMLResponse:
    """A patient's record as the policy lets me see it for ``purpose``, and the forms."""
    chosen = purpose_of(purpose, caller.actor)
    records = svc.records.search(caller.context(chosen, now), patient_id)
    grants = [
        g for g in svc.care_reads.grants_held(caller.user_id, now) if g.patient_id == patient_id
    ]
    in_team = bool(svc.care_reads.care_relationships_of(patient_id, caller.user_id, now))
    view = pages.record_view(records)
    return render(
        request,
        "practice_record.html",
        patient_id=patient_id,
        view=view,
        names=svc.directory.staff({n["author_id"] for n in view["notes"]}),
        purpose=str(chosen),
        purposes=[str(p) for p in PURPOSES],
        consent_purposes=[str(p) for p in CONSENT_PURPOSES],
        languages=LANGUAGES,
        observations=OBSERVATIONS,
        content_types=sorted(CONTENT_TYPES),
        max_mib=svc.documents.limits.max_bytes // (1024 * 1024),
        practitioners=svc.directory.practitioners(),
        me=caller.user_id,
        genders=GENDERS,
        grant=grants[0] if grants else None,
        in_team=in_team,
        **pages.ctx(request),
        flashes=pages.flashes(request, done),
    )


@router.post("/patients/{patient_id}/file", **pages.back_to(RECORD))
def open_file(
    patient_id: str,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
    purpose: FormStr = "",
    family: FormStr = "",
    given: FormStr = "",
    birth_date: FormStr = "",
    gender: FormStr = "",
) -> RedirectResponse:
    """Open the patient's file: their FHIR Patient resource (id = the patient's id)."""
    chosen = purpose_of(purpose, caller.actor)
    if not family.strip() or gender not in GENDERS:
        raise pages.PageError(400, "error.patient_form")
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "name": [{"family": family.strip(), "given": given.split()}],
        "gender": gender,
    }
    if birth_date:
        resource["birthDate"] = birth_date
    svc.records.create(
        caller.context(chosen, now),
        resource,
        resource_id=patient_id,
        patient_id=patient_id,
    )
    return to_record(patient_id, chosen, "file")


def observation(patient_id: str, code: str, value: str, now: datetime) -> dict[str, Any]:
    """A valid FHIR R4 vital-signs Observation from the form (PageError if out of range)."""
    if code not in OBSERVATIONS:
        raise pages.PageError(400, "error.observation_code")
    loinc, display, unit, low, high = OBSERVATIONS[code]
    try:
        number = Decimal(value.strip().replace(",", "."))
    except InvalidOperation:
        raise pages.PageError(400, "error.observation_value") from None
    if not number.is_finite() or not low <= number <= high:
        raise pages.PageError(400, "error.observation_value")
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": instant(now),
        "valueQuantity": {
            "value": int(number) if number == number.to_integral_value() else float(number),
            "unit": UNIT_DISPLAY.get(unit, unit),
            "system": UCUM,
            "code": unit,
        },
    }


@router.post("/patients/{patient_id}/observations", **pages.back_to(RECORD))
def add_observation(
    patient_id: str,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
    purpose: FormStr = "",
    code: FormStr = "",
    value: FormStr = "",
    sensitivity: FormStr = "",
) -> RedirectResponse:
    """Add a measurement (blood pressure, heart rate, glycemia, weight, temperature)."""
    chosen = purpose_of(purpose, caller.actor)
    svc.records.create(
        caller.context(chosen, now),
        observation(patient_id, code, value, now),
        patient_id=patient_id,
        sensitivity=sensitivity_of(sensitivity),
    )
    return to_record(patient_id, chosen, "observation")


async def upload_limit(request: Request) -> None:
    """Refuse an announced oversize upload (413) before its body is read; a body without a
    length is counted as it streams by the document service."""
    limit = deps.services(request).documents.limits.max_bytes + 64 * 1024
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise pages.PageError(413, "error.too_large")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise pages.PageError(415, "error.multipart")


@router.post("/patients/{patient_id}/documents", **pages.back_to(RECORD))
async def add_document(
    patient_id: str,
    _limit: Annotated[None, Depends(upload_limit)],
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    now: Now,
) -> RedirectResponse:
    """Add a document (PDF, image, DICOM, text) to the record, encrypted as it streams."""
    form = await request.form()
    upload = form.get("file")
    title, purpose, sensitivity = (
        str(form.get(k) or "") for k in ("title", "purpose", "sensitivity")
    )
    if not isinstance(upload, UploadFile) or not title.strip():
        raise pages.PageError(400, "error.document_form")
    chosen = purpose_of(purpose, caller.actor)
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": instant(now),
        "description": title.strip()[:200],
        "content": [{"attachment": {}}],
    }
    await run_in_threadpool(
        svc.documents.create_document,
        caller.context(chosen, now),
        resource,
        upload.file,
        upload.content_type or "",
        patient_id=patient_id,
        sensitivity=sensitivity_of(sensitivity),
    )
    return to_record(patient_id, chosen, "document")


@router.get("/documents/{document_id}")
def document(
    document_id: str, caller: PractitionerCaller, svc: Svc, now: Now, purpose: str = ""
) -> StreamingResponse:
    """Download a document of a patient I may read (audited as a read)."""
    content = svc.documents.open_document(
        caller.context(purpose_of(purpose, caller.actor), now),
        document_id,
    )
    return download(content)


@router.post("/patients/{patient_id}/referrals", **pages.back_to(RECORD))
def refer(
    patient_id: str,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
    practitioner_id: FormStr = "",
    purpose: FormStr = "",
) -> RedirectResponse:
    """Refer the patient to a colleague (who joins the care team); the patient is told."""
    chosen = purpose_of(purpose, caller.actor)
    colleagues = {p.user_id for p in svc.directory.practitioners()} - {caller.user_id}
    if practitioner_id not in colleagues:
        raise pages.PageError(400, "error.practitioner")
    svc.care_team.refer(
        caller.context(chosen, now), patient_id=patient_id, practitioner_id=practitioner_id
    )
    return to_record(patient_id, chosen, "referred")


#: What a scanned paper form may be (a subset of the document types: a scan is a PDF or an image).
FORM_TYPES = ("application/pdf", "image/png", "image/jpeg")


def _signed_on(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise pages.PageError(400, "error.paper_date") from None


def _checked_scan(svc: Services, upload: UploadFile | None) -> UploadFile:
    """The scanned form, read through the same checks as every document (type allowed and
    matching the first bytes, size limit) before anything is recorded, then rewound."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise pages.PageError(400, "error.paper_form")
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if declared not in FORM_TYPES:
        raise pages.PageError(415, "error.paper_type")
    limits = svc.documents.limits
    checked = CheckedUpload(upload.file, limits.content_type(declared), limits.max_bytes)
    while checked.read(64 * 1024):
        pass
    upload.file.seek(0)
    return upload


def _form_purpose(
    svc: Services,
    caller: Caller,
    patient_id: str,
    chosen: Purpose,
    grantee: str | None,
    now: datetime,
) -> Purpose:
    """The purpose the scan is stored under: storing a document needs the patient's consent to
    it, which the grant gives, except for sharing with a colleague (then another care purpose
    the patient consented to)."""
    if chosen is not Purpose.SHARING or grantee == caller.user_id:
        return chosen
    held = svc.consent.active_purposes(patient_id, now)
    for purpose in (Purpose.TELECONSULTATION, Purpose.TELERADIOLOGY, Purpose.REMOTE_MONITORING):
        if purpose in held:
            return purpose
    raise pages.PageError(400, "error.paper_no_care_consent")


@router.post("/patients/{patient_id}/consents", **pages.back_to(RECORD))
def paper_consent(
    patient_id: str,
    caller: PractitionerCaller,
    request: Request,
    svc: Svc,
    plat: Plat,
    now: Now,
    purpose: FormStr = "",
    change: FormStr = "grant",
    text_language: FormStr = "",
    grantee_id: FormStr = "",
    evidence_id: FormStr = "",
    signed_on: FormStr = "",
    form_file: Annotated[FormFile | None, File()] = None,
) -> RedirectResponse:
    """Record a consent (or its withdrawal) the patient signed on paper; needs a fresh second
    factor, and the patient is notified (a notice, and an e-mail without health data).

    A grant needs the signed form: its date (refused if on or before the patient's latest
    withdrawal, see :class:`~secretum.consent.service.ConsentService`) and its scan (PDF or
    image, checked like every document), stored encrypted as a document of the patient and
    named as the consent's evidence. The consent is recorded first (storing a document needs
    it); if the scan then cannot be stored, the consent is withdrawn again at once."""
    try:
        chosen = Purpose(purpose)
    except ValueError:
        raise pages.PageError(400, "error.purpose") from None
    if chosen not in CONSENT_PURPOSES or change not in ("grant", "withdraw"):
        raise pages.PageError(400, "error.purpose")
    if evidence_id and not ID_PATTERN.fullmatch(evidence_id):
        raise pages.PageError(400, "error.evidence")
    grantee = (grantee_id or None) if chosen is Purpose.SHARING else None
    if chosen is Purpose.SHARING and grantee is None:
        raise pages.PageError(400, "error.practitioner")
    ctx = caller.context(Purpose.PATIENT_REQUEST, now)
    common: dict[str, Any] = {
        "patient_id": patient_id,
        "purpose": chosen,
        "method": ConsentMethod.PAPER_SCANNED,
        "grantee_id": grantee,
    }
    if change == "withdraw":
        try:
            svc.consent.withdraw(ctx, evidence_id=evidence_id or None, **common)
        except ValueError:
            raise pages.PageError(400, "error.invalid") from None
        return to_record(patient_id, default_purpose(caller.actor), "consent-withdraw")
    form = PaperForm(_signed_on(signed_on))
    scan = _checked_scan(svc, form_file)
    lang = text_language if text_language in LANGUAGES else language(request)
    text = svc.consent.texts.current(chosen, lang)
    try:
        store_under = _form_purpose(svc, caller, patient_id, chosen, grantee, now)
        record = svc.consent.grant(ctx, text_sha256=text.sha256, paper_form=form, **common)
        pending = svc.consent.paper_form(record.consent_id)
    except PaperFormPredatesWithdrawal:
        raise pages.PageError(409, "error.paper_predates_withdrawal") from None
    except PaperFormDate:
        raise pages.PageError(400, "error.paper_date") from None
    except ValueError:  # a form the consent rules refuse (e.g. sharing with the patient)
        raise pages.PageError(400, "error.invalid") from None
    if pending is None or pending[1] is not None:  # granted already: nothing new recorded
        return to_record(patient_id, default_purpose(caller.actor), "consent-unchanged")
    _store_scan(svc, ctx, record.consent_id, store_under, scan, common)
    send_consent_recorded(plat, patient_id)
    return to_record(patient_id, default_purpose(caller.actor), "consent-grant")


def _store_scan(
    svc: Services,
    ctx: RequestContext,
    consent_id: str,
    purpose: Purpose,
    scan: UploadFile,
    common: dict[str, Any],
) -> None:
    """Store the scan as a document of the patient and name it as the consent's evidence; on
    any failure, withdraw the consent just recorded (it must not stand without its form)."""
    now, patient_id = ctx.now, common["patient_id"]
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": instant(now),
        "description": "Consent form (paper) / Formulaire de consentement (papier)",
        "content": [{"attachment": {}}],
    }
    try:
        stored = svc.documents.create_document(
            ctx.for_purpose(purpose),
            resource,
            scan.file,
            (scan.content_type or "").split(";")[0].strip().lower(),
            patient_id=patient_id,
        )
        svc.consent.attach_paper_form(ctx, consent_id=consent_id, document_id=stored.resource_id)
    except Exception:
        svc.consent.withdraw(ctx, **common)
        raise
