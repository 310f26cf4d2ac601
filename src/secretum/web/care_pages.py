"""What the care pages (``/me``, ``/practice``, ``/dpo``) share: how a refused or failed use case
becomes a page, the step-up detour, the caller's address for the audit, times for people.

:class:`CarePageRoute` is the route class of those routers: a handler raises the use case's
exception and the route turns it into a clear page with the right status — 403 for a refusal
(with the policy's reason in words), 404, 410 for an erased record, 413/415 for a refused
upload, 400 for a bad form — or, when the policy asks for a fresh second factor, into a
redirect to ``/account/step-up?next=...``. Error pages never echo what was submitted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from secretum.access.errors import Refused, StepUpRequired
from secretum.agenda.fhir import note_text
from secretum.consent.store import NoActiveConsent
from secretum.consent.texts import UnknownText
from secretum.localtime import DEFAULT_ZONE, local_text, zone
from secretum.policy.breakglass import UnknownGrant
from secretum.web import refusals
from secretum.web.deps import Caller
from secretum.web.i18n import translate
from secretum.web.templating import clinic_zone, language, render

STEP_UP_PAGE = "/account/step-up"
#: The zone of a FHIR time stored without an offset (the validator refuses new ones).
ZONE = zone(DEFAULT_ZONE)


class PageError(Exception):
    """A handler's refusal of a form: ``status`` and a message key of the care catalogue."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


class StepUpRedirect(Exception):
    """The policy wants a fresh second factor: go to the step-up page, then back to ``next``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


needs_step_up = refusals.needs_step_up


@contextmanager
def step_up_then(next_path: str) -> Iterator[None]:
    """Run a use case; a step-up refusal becomes a detour back to ``next_path``."""
    try:
        yield
    except StepUpRequired:
        raise StepUpRedirect(next_path) from None


def step_up_url(next_path: str) -> str:
    return f"{STEP_UP_PAGE}?next={quote(next_path, safe='/')}"


def address(caller: Caller) -> str | None:
    """The caller's IP address for the audit, or None when it is not an IP address."""
    try:
        return str(ipaddress.ip_address(caller.address or ""))
    except ValueError:
        return None


#: What a post/redirect/get may say was done (``?done=<code>``, message ``done.<code>``).
DONE_CODES = frozenset(
    {
        "granted",
        "withdrawn",
        "invited",
        "booked",
        "referred",
        "ended",
        "named",
        "unnamed",
        "nothing",
        "restricted",
        "unrestricted",
        "rectification",
        "file",
        "observation",
        "document",
        "consent-grant",
        "consent-withdraw",
        "declared",
        "stopped",
        "closed",
        "reviewed",
    }
)


def flashes(request: Request, code: str) -> list[tuple[str, str]]:
    """The success message of a post/redirect/get, if its code is one we know."""
    if code not in DONE_CODES:
        return []
    return [("success", translate(language(request), f"done.{code}"))]


def done(url: str, code: str) -> RedirectResponse:
    """Post/redirect/get: back to ``url`` saying what was done (a message key suffix)."""
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}done={quote(code)}", status_code=303)


def reason_key(exc: BaseException) -> str:
    """The message key of a policy refusal (``reason.deny.no-consent``...)."""
    decision = getattr(exc, "decision", None)
    reason = getattr(decision, "reason", "deny.default")
    return f"reason.{reason}"


def _status_and_key(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, PageError):
        return exc.status, exc.key
    if isinstance(exc, Refused):
        return refusals.page_refusal(exc)
    if isinstance(exc, UnknownGrant):
        return 404, "error.not_found"
    if isinstance(exc, NoActiveConsent):
        return 409, "error.no_active_consent"
    if isinstance(exc, UnknownText):
        return 400, "error.invalid"
    if isinstance(exc, HTTPException):
        if exc.status_code == 403 and "CSRF" in str(exc.detail):
            return 403, "error.csrf"
        key = {403: "error.role", 404: "error.not_found"}.get(exc.status_code, "error.invalid")
        return exc.status_code, key
    return 400, "error.invalid"


def error_key(exc: BaseException) -> str:
    """The message key explaining why ``exc`` refused the request."""
    return _status_and_key(exc)[1]


def error_page(request: Request, exc: BaseException, back: str | None = None) -> Response:
    """The page of a refused request: a title, the reason in words, a way back."""
    status, key = _status_and_key(exc)
    return render(
        request, "patient_error.html", status_code=status, status=status, message=key, back=back
    )


def back_to(template: str) -> dict[str, Any]:
    """Route options naming the page a form belongs to (``/practice/patients/{patient_id}``):
    where its error page leads back, and where a step-up detour returns."""
    return {"openapi_extra": {"x-back": template}}


HANDLED = (
    PageError,
    Refused,
    UnknownGrant,
    NoActiveConsent,
    UnknownText,
    HTTPException,
    RequestValidationError,
)


class CarePageRoute(APIRoute):
    """A page route whose refusals become pages (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        template = (self.openapi_extra or {}).get("x-back")

        def back(request: Request) -> str | None:
            if template is None:
                return None
            params = {k: quote(str(v), safe="") for k, v in request.path_params.items()}
            try:
                return str(template).format(**params)
            except (KeyError, IndexError):
                return None

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except StepUpRedirect as exc:
                return RedirectResponse(step_up_url(exc.next_path), status_code=303)
            except HANDLED as exc:
                if needs_step_up(exc):
                    here = request.url.path if request.method == "GET" else "/"
                    target = back(request) or here
                    return RedirectResponse(step_up_url(target), status_code=303)
                return error_page(request, exc, back(request))

        return page_handler


def formatter(request: Request) -> Callable[[datetime | None], str]:
    """Times in the clinic's zone, in the page's language (empty for None)."""
    lang, tz = language(request), clinic_zone(request)
    return lambda value: local_text(value, lang, tz)


def ctx(request: Request) -> dict[str, Any]:
    """Helpers every care template gets: ``fmt(time)``, ``parse_time(text)``,
    ``person(names, user_id)`` (a staff member's name and specialty, plain text) and
    ``num(value)`` (a decimal comma in French), ``day(date)``."""
    lang = language(request)

    def person(names: dict[str, Any], user_id: str) -> str:
        member = names.get(user_id)
        if member is None:
            return translate(lang, "care.unknown_person")
        if member.specialty:
            return f"{member.display_name} ({translate(lang, 'specialty.' + member.specialty)})"
        return str(member.display_name)

    def day(value: object) -> str:
        """A FHIR date (``1980-05-17``) as people write it."""
        text = str(value or "")
        if lang == "fr" and len(text) == 10 and text[4] == text[7] == "-":
            return f"{text[8:]}/{text[5:7]}/{text[:4]}"
        return text

    def num(value: object) -> str:
        text = str(value)
        return text.replace(".", ",") if lang == "fr" and isinstance(value, float) else text

    return {
        "fmt": formatter(request),
        "parse_time": parse_time,
        "person": person,
        "num": num,
        "day": day,
    }


# -- consent texts: the small Markdown of secretum/consent/texts, as data for the template -----

Segment = tuple[bool, str]  # (bold, text)
Block = tuple[str, list[list[Segment]]]  # ("p", [line]) or ("ul", [item, ...])


def _segments(text: str) -> list[Segment]:
    parts = text.split("**")
    return [(i % 2 == 1, part) for i, part in enumerate(parts) if part]


def text_blocks(body: str) -> list[Block]:
    """Paragraphs and bullet lists of a consent text (its title line left out), as segments
    the template escapes: no Markdown engine, no ``|safe``."""
    blocks: list[Block] = []
    for chunk in body.split("\n\n"):
        lines = [line for line in chunk.splitlines() if line.strip()]
        if lines and lines[0].startswith("#"):
            lines = lines[1:]
        if not lines:
            continue
        if lines[0].lstrip().startswith("- "):
            items: list[str] = []
            for line in lines:
                if line.lstrip().startswith("- "):
                    items.append(line.lstrip()[2:].strip())
                elif items:
                    items[-1] += " " + line.strip()
            blocks.append(("ul", [_segments(item) for item in items]))
        else:
            blocks.append(("p", [_segments(" ".join(line.strip() for line in lines))]))
    return blocks


# -- a record, as the pages show it --------------------------------------------------------------


def local_time(text: str, tz: ZoneInfo) -> datetime:
    """A ``datetime-local`` form value (``2026-12-01T09:30``, in ``tz``: the clinic's zone), or
    a 400."""
    try:
        parsed = datetime.fromisoformat(text) if 16 <= len(text) <= 19 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None:
        raise PageError(400, "error.appointment")
    return parsed.replace(tzinfo=tz)


def parse_time(text: object) -> datetime | None:
    """A FHIR dateTime/instant as an aware datetime (None if absent or partial)."""
    if not isinstance(text, str) or len(text) < 19:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZONE)


def _loinc(concept: object) -> str:
    """The LOINC code of a CodeableConcept, if any (the pages name known ones in words)."""
    if isinstance(concept, dict):
        for coding in concept.get("coding", []):
            if coding.get("system") == "http://loinc.org" and coding.get("code"):
                return str(coding["code"])
    return ""


def _label(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    for coding in concept.get("coding", []):
        if coding.get("display"):
            return str(coding["display"])
    return str(concept.get("text", ""))


def _restricted(record: Any) -> bool:
    return str(record.sensitivity) == "restricted"


def patient_view(resource: dict[str, Any]) -> dict[str, Any]:
    names = resource.get("name") or [{}]
    name = names[0]
    given = " ".join(name.get("given", []))
    return {
        "id": resource.get("id", ""),
        "name": " ".join(part for part in (given, name.get("family", "")) if part),
        "birth_date": resource.get("birthDate", ""),
        "gender": resource.get("gender", ""),
    }


def observation_view(record: Any) -> dict[str, Any]:
    res = record.resource
    quantity = res.get("valueQuantity") or {}
    value = quantity.get("value", res.get("valueString", ""))
    return {
        "id": record.resource_id,
        "label": _label(res.get("code")),
        "loinc": _loinc(res.get("code")),
        "text": (res.get("code") or {}).get("text", ""),
        "value": value,
        "unit": quantity.get("unit", ""),
        "when": parse_time(res.get("effectiveDateTime")) or record.last_updated,
        "restricted": _restricted(record),
        "version": record.version,
    }


def document_view(record: Any) -> dict[str, Any]:
    res = record.resource
    attachment = (res.get("content") or [{}])[0].get("attachment", {})
    return {
        "id": record.resource_id,
        "title": res.get("description") or attachment.get("title") or _label(res.get("type")),
        "when": parse_time(res.get("date")) or record.last_updated,
        "content_type": attachment.get("contentType", ""),
        "size": attachment.get("size"),
        "has_file": "url" in attachment,
        "restricted": _restricted(record),
    }


def task_view(record: Any) -> dict[str, Any]:
    res = record.resource
    return {
        "id": record.resource_id,
        "text": res.get("description", ""),
        "focus": (res.get("focus") or {}).get("reference", ""),
        "status": res.get("status", ""),
        "when": parse_time(res.get("authoredOn")) or record.last_updated,
    }


def note_view(record: Any) -> dict[str, Any]:
    """A consultation note (a Composition written by the agenda's note use case)."""
    res = record.resource
    author = ((res.get("author") or [{}])[0].get("reference") or "").removeprefix("Practitioner/")
    return {
        "id": record.resource_id,
        "author_id": author,
        "text": note_text(res),
        "when": parse_time(_held(res)) or parse_time(res.get("date")) or record.last_updated,
    }


def _held(composition: dict[str, Any]) -> object:
    """When the consultation of a note began (its event's period)."""
    events = composition.get("event") or [{}]
    return (events[0].get("period") or {}).get("start")


def record_view(records: list[Any]) -> dict[str, Any]:
    """Patient, observations (newest first), documents, consultation notes and rectification
    requests."""
    by_type: dict[str, list[Any]] = {}
    for record in records:
        by_type.setdefault(record.resource_type, []).append(record)
    patients = by_type.get("Patient", [])

    def newest(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda i: i["when"], reverse=True)

    return {
        "patient": patient_view(patients[0].resource) if patients else None,
        "observations": newest([observation_view(r) for r in by_type.get("Observation", [])]),
        "documents": newest([document_view(r) for r in by_type.get("DocumentReference", [])]),
        "requests": newest([task_view(r) for r in by_type.get("Task", [])]),
        "notes": newest([note_view(r) for r in by_type.get("Composition", [])]),
    }


def signed_report_view(signed: Any, names: dict[str, Any]) -> dict[str, Any]:
    """A signed radiology report as the patient's record shows it (its signature checked)."""
    verification = signed.verification
    member = names.get(verification.signer_id or "")
    return {
        "signed": verification.signed,
        "valid": verification.valid,
        "when": parse_time(verification.signed_at) if verification.signed_at else None,
        "signer_name": member.display_name if member is not None else "",
        "status": signed.record.resource.get("status", ""),
        "conclusion": signed.record.resource.get("conclusion", ""),
    }
