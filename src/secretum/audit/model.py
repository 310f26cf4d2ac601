"""Audit events: who did what to which resource of which patient, when, why, from where.

An event holds identifiers and codes only, never health data. Every field is checked against a
strict pattern with a bounded length (no spaces, no free text), and a value that does not fit is
refused with a :class:`ValueError` that names the field but never echoes the value (it might be
the very health data that must not reach the log).

Codes: the event type is a DICOM "Audit Event ID" (DCM, PS3.16 CID 400), the subtype a DICOM
"Audit Event Type Code" (CID 401) or a FHIR restful interaction, the action the DICOM/FHIR
EventActionCode (C/R/U/D/E), the outcome the FHIR R4 AuditEvent outcome (0/4/8/12), the purpose a
v3 PurposeOfUse code (as IHE BALP uses).

**Canonical entry** (the bytes a Merkle leaf hashes, RFC 9162 §2.1.1): the JSON object of the
entry's fields plus ``"seq"`` and ``"v": 1``, keys sorted, no whitespace (separators ``,`` and
``:``), UTF-8; an absent optional field is the empty string ``""``; ``outcome`` and ``seq`` are
integers; ``recorded`` is UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. Since validated values contain no
character that JSON escapes, this equals ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``
and is built with one ``%`` format (:data:`CANONICAL_TEMPLATE`), which keeps verify fast.

``outcome_desc`` (the code of why an attempt was refused, e.g. ``deny.not-own-record``; FHIR
``AuditEvent.outcomeDesc``) came later, and is the one exception to "absent = ``""``": an absent
``outcome_desc`` leaves no member at all, so that every entry written before it existed keeps
exactly its bytes and leaf hash (old logs still verify). A present one is the member
``"outcome_desc":"<code>"`` in its sorted place, right after ``"outcome"``: the template's slot
there takes the whole fragment ``,"outcome_desc":"<code>"`` or ``""`` (see
:func:`outcome_desc_member`, and the same expression in SQL in :mod:`secretum.audit.verify`),
so the entry is still ``json.dumps(obj, sort_keys=True, ...)`` of its fields.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum

DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL_SYSTEM = "http://hl7.org/fhir/restful-interaction"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


class EventType(StrEnum):
    """DICOM PS3.16 CID 400 "Audit Event ID" (system DCM)."""

    APPLICATION_ACTIVITY = "110100"
    AUDIT_LOG_USED = "110101"
    EXPORT = "110106"
    IMPORT = "110107"
    NETWORK_ENTRY = "110108"
    ORDER_RECORD = "110109"
    PATIENT_RECORD = "110110"
    PROCEDURE_RECORD = "110111"
    QUERY = "110112"
    SECURITY_ALERT = "110113"
    USER_AUTHENTICATION = "110114"
    DICOM_INSTANCES_ACCESSED = "110103"
    DICOM_INSTANCES_TRANSFERRED = "110104"


EVENT_TYPE_DISPLAY = {
    "110100": "Application Activity",
    "110101": "Audit Log Used",
    "110103": "DICOM Instances Accessed",
    "110104": "DICOM Instances Transferred",
    "110106": "Export",
    "110107": "Import",
    "110108": "Network Entry",
    "110109": "Order Record",
    "110110": "Patient Record",
    "110111": "Procedure Record",
    "110112": "Query",
    "110113": "Security Alert",
    "110114": "User Authentication",
}

#: Subtypes: DICOM CID 401 "Audit Event Type Code" and FHIR restful interactions (IHE BALP).
SUBTYPES: dict[str, tuple[str, str]] = {
    "110120": (DCM_SYSTEM, "Application Start"),
    "110121": (DCM_SYSTEM, "Application Stop"),
    "110122": (DCM_SYSTEM, "Login"),
    "110123": (DCM_SYSTEM, "Logout"),
    "110126": (DCM_SYSTEM, "Node Authentication"),
    "110127": (DCM_SYSTEM, "Emergency Override Started"),
    "110129": (DCM_SYSTEM, "Security Configuration"),
    "110132": (DCM_SYSTEM, "Use of Restricted Function"),
    "110135": (DCM_SYSTEM, "Object Security Attributes Changed"),
    "110136": (DCM_SYSTEM, "Security Roles Changed"),
    "110137": (DCM_SYSTEM, "User Security Attributes Changed"),
    "110138": (DCM_SYSTEM, "Emergency Override Stopped"),
    **{
        code: (RESTFUL_SYSTEM, code)
        for code in (
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "history",
            "create",
            "search",
            "capabilities",
            "transaction",
            "batch",
            "operation",
        )
    },
}


class EventAction(StrEnum):
    """EventActionCode: Create, Read, Update, Delete, Execute."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(IntEnum):
    """FHIR R4 AuditEvent.outcome (DICOM EventOutcomeIndicator)."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


#: v3 PurposeOfUse codes accepted as the purpose of an access.
PURPOSES = frozenset(
    {
        "TREAT",  # treatment
        "ETREAT",  # emergency treatment (break-glass)
        "BTG",  # break the glass
        "CAREMGT",  # care management
        "COC",  # coordination of care
        "HOPERAT",  # healthcare operations
        "HPAYMT",  # payment
        "HRESCH",  # research
        "HSYSADMIN",  # system administration
        "HTEST",  # test health data
        "HLEGAL",  # legal
        "PATADMIN",  # patient administration
        "PATRQT",  # patient requested (the patient's own access)
        "PUBHLTH",  # public health
        "RECORDMGT",  # records management
    }
)

_ACTIONS = frozenset(a.value for a in EventAction)
_OUTCOMES = frozenset(o.value for o in Outcome)

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,63}")  # FHIR id, no leading punctuation
ROLE_PATTERN = re.compile(r"[a-z][a-z0-9_\-]{0,31}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
RESOURCE_TYPE_PATTERN = re.compile(r"[A-Z][A-Za-z]{1,63}")  # FHIR resource type names
#: A reason code (``deny.no-consent``): lower case, dots and hyphens, never free text.
OUTCOME_DESC_PATTERN = re.compile(r"[a-z][a-z0-9.\-]{0,63}")

#: Canonical entry fields, in the (sorted) order of :data:`CANONICAL_TEMPLATE`.
CANONICAL_FIELDS = (
    "action",
    "actor_id",
    "actor_role",
    "event_type",
    "outcome",
    "outcome_desc",  # its slot takes the whole member or "": see the module docstring
    "patient_id",
    "purpose",
    "recorded",
    "resource_id",
    "resource_type",
    "seq",
    "source_address",
    "subtype",
)
CANONICAL_TEMPLATE = (
    '{"action":"%s","actor_id":"%s","actor_role":"%s","event_type":"%s","outcome":%d%s,'
    '"patient_id":"%s","purpose":"%s","recorded":"%s","resource_id":"%s","resource_type":"%s",'
    '"seq":%d,"source_address":"%s","subtype":"%s","v":1}'
)
#: The leaf input of RFC 9162 §2.1.1 with its 0x00 prefix, ready for one SHA-256 call.
LEAF_TEMPLATE = "\x00" + CANONICAL_TEMPLATE


_DESC_MEMBER = ',"outcome_desc":"%s"'


def outcome_desc_member(code: str | None) -> str:
    """What the ``outcome_desc`` slot of :data:`CANONICAL_TEMPLATE` takes: the JSON member
    with its leading comma, or ``""`` when there is no code (the entry's bytes are then those
    of an entry written before the field existed)."""
    return "" if code is None else _DESC_MEMBER % code


_TIME_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


def format_time(when: datetime) -> str:
    """UTC, microseconds, ``Z``: the one textual form of a time in the log."""
    if when.__class__ is not datetime or when.tzinfo is not UTC:  # else: the common case
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise ValueError("audit time must be a timezone-aware datetime")
        when = when.astimezone(UTC)
    # One %-format: about twice as fast as isoformat(timespec=...), with the same result.
    return _TIME_FORMAT % (
        when.year,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
        when.microsecond,
    )


def _refuse(name: str, rule: str) -> ValueError:
    return ValueError(f"audit field {name!r} refused: {rule} (ids and codes only, no free text)")


def _check(name: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _refuse(name, rule)
    return value


def _optional(name: str, value: object, pattern: re.Pattern[str], rule: str) -> str | None:
    return None if value is None else _check(name, value, pattern, rule)


def _code(name: str, value: object, allowed: Container[str], rule: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _refuse(name, rule)
    return str(value)


def _codes(values: Iterable[str], optional: bool = False) -> dict[str | None, str | None]:
    """Accepted code -> the plain ``str`` stored (a StrEnum member hashes as its value)."""
    table: dict[str | None, str | None] = {str(v): str(v) for v in values}
    if optional:
        table[None] = None
    return table


# The fast path of AuditEvent.__init__: one dict lookup both checks a code and turns an enum
# member into its plain value; None is in the tables of the optional codes.
_EVENT_TYPE_CODES = _codes(EVENT_TYPE_DISPLAY)
_ACTION_CODES = _codes(_ACTIONS)
_SUBTYPE_CODES = _codes(SUBTYPES, optional=True)
_PURPOSE_CODES = _codes(PURPOSES, optional=True)
_ID_MATCH = ID_PATTERN.fullmatch
_ROLE_MATCH = ROLE_PATTERN.fullmatch
_TYPE_MATCH = RESOURCE_TYPE_PATTERN.fullmatch
_IPV4_MATCH = _IPV4.fullmatch
_DESC_MATCH = OUTCOME_DESC_PATTERN.fullmatch


@dataclass(frozen=True, slots=True, init=False)
class AuditEvent:
    """One audited action. Times are parameters: ``recorded`` is given by the caller.

    Built on every audited action, so ``__init__`` checks the common case (every field valid,
    codes known, an IPv4 address or none) in one expression and sets each field once; anything
    else goes through :func:`_normalise`, which names the refused field.
    """

    recorded: datetime
    event_type: str  # EventType (DCM code)
    action: str  # EventAction
    actor_id: str
    actor_role: str
    outcome: int = Outcome.SUCCESS
    subtype: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    patient_id: str | None = None
    purpose: str | None = None
    source_address: str | None = None
    outcome_desc: str | None = None  # the reason code of a refusal; FHIR outcomeDesc
    recorded_text: str = field(init=False, repr=False, compare=False)
    desc_member: str = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        recorded: datetime,
        event_type: str,
        action: str,
        actor_id: str,
        actor_role: str,
        outcome: int = Outcome.SUCCESS,
        subtype: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        patient_id: str | None = None,
        purpose: str | None = None,
        source_address: str | None = None,
        outcome_desc: str | None = None,
    ) -> None:
        recorded_text = format_time(recorded)
        try:
            codes = (
                _EVENT_TYPE_CODES[event_type],
                _ACTION_CODES[action],
                _SUBTYPE_CODES[subtype],
                _PURPOSE_CODES[purpose],
            )
            valid = (
                (outcome.__class__ is int or outcome.__class__ is Outcome)
                and outcome in _OUTCOMES
                and _ID_MATCH(actor_id) is not None
                and _ROLE_MATCH(actor_role) is not None
                and (
                    (resource_id is None and resource_type is None)
                    or (
                        _ID_MATCH(resource_id) is not None  # type: ignore[arg-type]
                        and _TYPE_MATCH(resource_type) is not None  # type: ignore[arg-type]
                    )
                )
                and (patient_id is None or _ID_MATCH(patient_id) is not None)
                and (source_address is None or _IPV4_MATCH(source_address) is not None)
                and (outcome_desc is None or _DESC_MATCH(outcome_desc) is not None)
            )
        except (KeyError, TypeError):  # an unknown code, not a string
            valid = False
        if valid:
            event_type, action, subtype, purpose = codes  # type: ignore[assignment]
            outcome = int(outcome)
        else:
            event_type, action, outcome, subtype, purpose, source_address = _normalise(
                event_type,
                action,
                actor_id,
                actor_role,
                outcome,
                subtype,
                resource_type,
                resource_id,
                patient_id,
                purpose,
                source_address,
                outcome_desc,
            )
        put = object.__setattr__
        put(self, "recorded", recorded)
        put(self, "event_type", event_type)
        put(self, "action", action)
        put(self, "actor_id", actor_id)
        put(self, "actor_role", actor_role)
        put(self, "outcome", outcome)
        put(self, "subtype", subtype)
        put(self, "resource_type", resource_type)
        put(self, "resource_id", resource_id)
        put(self, "patient_id", patient_id)
        put(self, "purpose", purpose)
        put(self, "source_address", source_address)
        put(self, "outcome_desc", outcome_desc)
        put(self, "recorded_text", recorded_text)
        put(self, "desc_member", "" if outcome_desc is None else _DESC_MEMBER % outcome_desc)

    def values(self, seq: int) -> tuple[str | int, ...]:
        """The canonical field values in :data:`CANONICAL_FIELDS` order (absent = ``""``; for
        ``outcome_desc``, its whole member or ``""``: see the module docstring)."""
        return (
            self.action,
            self.actor_id,
            self.actor_role,
            self.event_type,
            self.outcome,
            self.desc_member,
            self.patient_id or "",
            self.purpose or "",
            self.recorded_text,
            self.resource_id or "",
            self.resource_type or "",
            seq,
            self.source_address or "",
            self.subtype or "",
        )

    def canonical(self, seq: int) -> bytes:
        """The canonical entry bytes of this event at position ``seq`` (see module docstring)."""
        return (CANONICAL_TEMPLATE % self.values(seq)).encode("utf-8")

    def leaf_input(self, seq: int) -> bytes:
        """``0x00 || canonical entry``: what the RFC 9162 §2.1.1 leaf hash hashes."""
        return (LEAF_TEMPLATE % self.values(seq)).encode("utf-8")


def _normalise(
    event_type: object,
    action: object,
    actor_id: object,
    actor_role: object,
    outcome: object,
    subtype: object,
    resource_type: object,
    resource_id: object,
    patient_id: object,
    purpose: object,
    source_address: object,
    outcome_desc: object = None,
) -> tuple[str, str, int, str | None, str | None, str | None]:
    """Field by field: the normalised ``(event_type, action, outcome, subtype, purpose,
    source_address)``, or the ValueError that names the first refused field."""
    codes = (
        _code("event_type", event_type, EVENT_TYPE_DISPLAY, "DCM id"),
        _code("action", action, _ACTIONS, "one of C R U D E"),
    )
    sub = None if subtype is None else _code("subtype", subtype, SUBTYPES, "known subtype code")
    if isinstance(outcome, bool) or not isinstance(outcome, int) or outcome not in _OUTCOMES:
        raise _refuse("outcome", "one of 0 4 8 12")
    _check("actor_id", actor_id, ID_PATTERN, "an id [A-Za-z0-9.-]{1,64}")
    _check("actor_role", actor_role, ROLE_PATTERN, "a role code [a-z0-9_-]{1,32}")
    _optional("resource_id", resource_id, ID_PATTERN, "an id [A-Za-z0-9.-]{1,64}")
    _optional("patient_id", patient_id, ID_PATTERN, "an id [A-Za-z0-9.-]{1,64}")
    _optional("resource_type", resource_type, RESOURCE_TYPE_PATTERN, "a FHIR type")
    if (resource_id is None) != (resource_type is None):
        raise _refuse("resource_id", "resource_type and resource_id go together")
    why = None if purpose is None else _code("purpose", purpose, PURPOSES, "v3 PurposeOfUse code")
    address = None if source_address is None else _ip_address(source_address)
    _optional("outcome_desc", outcome_desc, OUTCOME_DESC_PATTERN, "a reason code [a-z0-9.-]")
    return (*codes, int(outcome), sub, why, address)


def _ip_address(value: object) -> str:
    if isinstance(value, str) and _IPV4.fullmatch(value):  # already in canonical form
        return value
    if not isinstance(value, str) or len(value) > 45 or "%" in value:  # no IPv6 zone names
        raise _refuse("source_address", "an IPv4 or IPv6 address")
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise _refuse("source_address", "an IPv4 or IPv6 address") from None
