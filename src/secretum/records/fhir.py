"""FHIR resources as Secretum holds them: validation, shapes, and errors as OperationOutcomes.

Resources are validated with ``fhir.resources.R4B`` (FHIR 4.3.0, the release closest to R4 in
the installed ``fhir.resources`` 8, whose default package is R5), then stored in their
normalised JSON form (``model_dump(mode="json", exclude_none=True)``). Decimals lose trailing
zeros in that form (``1.20`` becomes ``1.2``).

Every error raised here or by the record services is a :class:`FhirError` carrying a FHIR
OperationOutcome and an HTTP-like status. **Diagnostics never echo the input**: they name the
element (``Patient.birthDate``) and the rule broken, never the value, which may be health data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from secretum.access.errors import Refused
from secretum.access.model import Sensitivity
from secretum.audit.model import ID_PATTERN

FHIR_PACKAGE = "fhir.resources.R4B"
FHIR_VERSION = "4.3.0"
#: Types a client may create and update.
WRITABLE_TYPES = frozenset(
    {"Patient", "Practitioner", "Observation", "DocumentReference", "DiagnosticReport"}
    | {"ImagingStudy"}
)
#: Types a client may read and search. Read-only: AuditEvent (the audit log), Consent (the
#: consent context's records: a consent is given or withdrawn by its use case, with evidence),
#: Task (the rectification requests of the rights services), Encounter and Composition (a
#: consultation held and its note, written by the agenda's note use case).
READABLE_TYPES = WRITABLE_TYPES | {"AuditEvent", "Consent", "Task", "Encounter", "Composition"}
#: Element holding the patient reference, per type (Patient is its own patient; Practitioner
#: holds no patient data). Task is the rectification request (written by the rights services).
PATIENT_ELEMENT = {
    "Observation": "subject",
    "DocumentReference": "subject",
    "DiagnosticReport": "subject",
    "ImagingStudy": "subject",
    "Consent": "patient",
    "Task": "for",
    "Encounter": "subject",
    "Composition": "subject",
}
#: The extension holding a report's signature (a WebAuthn assertion over its canonical form;
#: :mod:`secretum.radiology`): written only by the signing use case, never by a client.
SIGNATURE_EXTENSION = "urn:secretum:fhir:extension:report-signature"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
#: v3 Confidentiality codes that make a resource restricted (R restricted, V very restricted).
RESTRICTED_CODES = frozenset({"R", "V"})
MAX_RESOURCE_BYTES = 1024 * 1024
#: How deep objects and arrays may nest in a resource. FHIR resources nest a dozen levels at
#: most (contained resources, extensions of extensions, Questionnaire items); the JSON parser and
#: the validation recurse once per level, so a body nested thousands deep would exhaust the
#: stack (RecursionError, a 500) before any rule could refuse it: it is measured first, without
#: recursion (:func:`check_depth`).
MAX_DEPTH = 64
#: Required bindings fhir.resources does not check (it checks code syntax, not value sets).
_GENDER = frozenset({"male", "female", "other", "unknown"})
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Observation", "status"): frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled"}
        | {"entered-in-error", "unknown"}
    ),
    ("DocumentReference", "status"): frozenset({"current", "superseded", "entered-in-error"}),
    ("Consent", "status"): frozenset(
        {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
    ),
    ("DiagnosticReport", "status"): frozenset(
        {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended"}
        | {"cancelled", "entered-in-error", "unknown"}
    ),
    ("Patient", "gender"): _GENDER,
    ("Practitioner", "gender"): _GENDER,
}
_REFERENCE = re.compile(r"Patient/([A-Za-z0-9][A-Za-z0-9.\-]{0,63})")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# -- errors -------------------------------------------------------------------------------------


class FhirError(Refused):
    """A refused request; ``outcome`` is the FHIR OperationOutcome to send back. (The policy's
    refusals are :class:`~secretum.access.errors.AccessDenied`, the one denial type of every
    context; the web layer sends them as one fixed OperationOutcome.)"""

    @property
    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.diagnostics)


class InvalidResource(FhirError):
    """Not valid FHIR, or breaks one of the server's rules (400)."""


class UnprocessableResource(InvalidResource):
    """Valid FHIR that breaks a business rule: subject, id, patient change (422)."""

    status = 422
    code = "business-rule"


class ResourceNotFound(FhirError):
    status = 404
    code = "not-found"


class NotSupported(FhirError):
    """A resource type or interaction the server does not offer (e.g. writing an AuditEvent)."""

    status = 405
    code = "not-supported"


class VersionConflict(FhirError):
    """``If-Match`` version is not the current one (412), or a concurrent update won (409)."""

    status = 412
    code = "conflict"


class FileTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedContentType(FhirError):
    status = 415
    code = "not-supported"


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    """A FHIR OperationOutcome with one issue (``diagnostics`` must never hold input values)."""
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


# -- parsing and validation ---------------------------------------------------------------------

#: A JSON string (skipped whole: brackets inside it do not count) or one bracket.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
_TOO_DEEP = f"the body nests objects and arrays deeper than {MAX_DEPTH} levels"


def check_depth(data: bytes | str) -> None:
    """Refuse JSON text nesting deeper than :data:`MAX_DEPTH` (InvalidResource), in one pass
    that does not recurse: strings are skipped whole, brackets counted. Stops at the first
    level too deep, so a megabyte of ``[`` costs 65 steps. Malformed text may be miscounted,
    but only ever towards a refusal of what the JSON parser would refuse anyway."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = 0
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidResource(_TOO_DEEP, code="structure")
        else:
            depth -= 1


def check_object_depth(value: object) -> None:
    """:func:`check_depth` for a decoded value (a mapping handed to the services directly),
    walked with an explicit stack rather than recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[object]
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise InvalidResource(_TOO_DEEP, code="structure")
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, Mapping | list | tuple)
        )


def parse_json(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object from bytes, text or a mapping; InvalidResource otherwise (no echo), also
    when it nests deeper than :data:`MAX_DEPTH` (checked before anything recurses into it)."""
    if isinstance(data, Mapping):
        check_object_depth(data)
        return dict(data)
    if len(data) > MAX_RESOURCE_BYTES:
        raise FileTooLarge(f"a resource is at most {MAX_RESOURCE_BYTES} bytes")
    check_depth(data)
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidResource("the body is not valid JSON", code="structure") from None
    if not isinstance(value, dict):
        raise InvalidResource("the body is not a JSON object", code="structure")
    return value


def resource_type_of(data: Mapping[str, Any], allowed: Iterable[str] = WRITABLE_TYPES) -> str:
    """The ``resourceType`` of ``data`` if it is one of ``allowed`` (the value is never echoed)."""
    kind = data.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InvalidResource("resourceType is missing", code="required")
    if kind not in allowed:
        raise NotSupported("this resourceType is not supported here")
    return kind


def validate(
    data: bytes | str | Mapping[str, Any], expected_type: str | None = None
) -> dict[str, Any]:
    """Validate a FHIR R4B resource; return its normalised JSON object.

    ``expected_type``: the type the caller expects (the URL's), refused if the body differs.
    """
    obj = parse_json(data)
    kind = resource_type_of(obj, READABLE_TYPES)
    if expected_type is not None and kind != expected_type:
        raise InvalidResource(f"resourceType must be {expected_type}", code="invalid")
    model = get_fhir_model_class(kind)
    try:
        parsed = model.model_validate(obj)
    except ValidationError as exc:
        raise InvalidResource(_diagnostics(kind, exc)) from None
    except (ValueError, TypeError):
        raise InvalidResource(f"{kind} is not valid FHIR R4") from None
    result: dict[str, Any] = parsed.model_dump(mode="json", exclude_none=True)
    for (type_, element), codes in REQUIRED_CODES.items():
        if type_ == kind and element in result and result[element] not in codes:
            raise InvalidResource(
                f"{kind}.{element}: not in its required value set", code="code-invalid"
            )
    return result


def check(resource: Mapping[str, Any]) -> None:
    """Validate a resource we built ourselves (Bundle, OperationOutcome, Task); AssertionError
    means a bug in Secretum, not bad input."""
    model = get_fhir_model_class(str(resource["resourceType"]))
    try:
        model.model_validate(dict(resource))
    except ValidationError as exc:
        raise AssertionError(_diagnostics(str(resource["resourceType"]), exc)) from None


def _diagnostics(kind: str, exc: ValidationError) -> str:
    """``Type.path: rule`` for the first errors; paths keep field names and indexes only, and an
    unknown element is not named (its name is input too)."""
    parts = []
    for error in exc.errors()[:5]:
        loc = list(error.get("loc", ()))
        if error.get("type") == "extra_forbidden" and loc:
            loc[-1] = "<unknown element>"
        path = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" if _FIELD.fullmatch(str(p)) else ".?"
            for p in loc
        )
        rule = str(error.get("type", "invalid"))
        parts.append(f"{kind}{path}: {rule}")
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -- shapes -------------------------------------------------------------------------------------


def check_id(resource_id: object, what: str = "id") -> str:
    """A server-side id: FHIR id syntax, starting with a letter or digit (the audit's rule)."""
    if not isinstance(resource_id, str) or not ID_PATTERN.fullmatch(resource_id):
        raise InvalidResource(f"{what} is not a valid id ([A-Za-z0-9][A-Za-z0-9.-]{{0,63}})")
    return resource_id


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The id of the patient a resource is about (None for a Practitioner)."""
    kind = resource["resourceType"]
    if kind == "Patient":
        return check_id(resource.get("id"))
    element = PATIENT_ELEMENT.get(kind)
    if element is None:
        return None
    ref = resource.get(element)
    reference = ref.get("reference") if isinstance(ref, Mapping) else None
    match = _REFERENCE.fullmatch(reference) if isinstance(reference, str) else None
    if match is None:
        raise UnprocessableResource(f"{kind}.{element} must reference a Patient (Patient/<id>)")
    return match.group(1)


def sensitivity_of(resource: Mapping[str, Any]) -> Sensitivity:
    """RESTRICTED when ``meta.security`` holds the v3 Confidentiality code R or V."""
    for coding in resource.get("meta", {}).get("security", []):
        system = coding.get("system", CONFIDENTIALITY_SYSTEM)
        if system == CONFIDENTIALITY_SYSTEM and coding.get("code") in RESTRICTED_CODES:
            return Sensitivity.RESTRICTED
    return Sensitivity.NORMAL


def label_restricted(resource: dict[str, Any]) -> None:
    """Add the ``R`` confidentiality label to ``meta.security`` if no restricting one is there."""
    if sensitivity_of(resource) is Sensitivity.RESTRICTED:
        return
    meta = resource.setdefault("meta", {})
    coding = {"system": CONFIDENTIALITY_SYSTEM, "code": "R", "display": "restricted"}
    meta.setdefault("security", []).append(coding)


def instant(when: datetime) -> str:
    """A FHIR instant (UTC, microseconds, ``Z``)."""
    if when.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def stamp(resource: dict[str, Any], resource_id: str, version: int, now: datetime) -> None:
    """Set the server-managed ``id``, ``meta.versionId`` and ``meta.lastUpdated``."""
    resource["id"] = resource_id
    meta = resource.setdefault("meta", {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(now)


@dataclass(frozen=True)
class FhirRecord:
    """One version of a stored resource. ``resource`` is patient data: never in a repr."""

    resource_type: str
    resource_id: str
    version: int
    patient_id: str | None
    sensitivity: Sensitivity
    last_updated: datetime
    resource: dict[str, Any] = field(repr=False, compare=False)

    def json_bytes(self) -> bytes:
        return json.dumps(self.resource, separators=(",", ":"), ensure_ascii=False).encode()

    def __repr__(self) -> str:
        return f"FhirRecord({self.resource_type}/{self.resource_id} v{self.version})"


def bundle(
    resources: Iterable[Mapping[str, Any]],
    bundle_type: str = "searchset",
    *,
    base_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A Bundle of ``resources`` (``searchset`` entries are marked ``match``), validated."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": dict(resource)}
        if base_url:
            entry["fullUrl"] = f"{base_url.rstrip('/')}/{resource['resourceType']}/{resource['id']}"
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match"}
        entries.append(entry)
    result: dict[str, Any] = {"resourceType": "Bundle", "type": bundle_type}
    if now is not None:
        result["timestamp"] = instant(now)
    if bundle_type == "searchset":
        result["total"] = len(entries)
    if entries:
        result["entry"] = entries
    check(result)
    return result
