"""The one place where a refused use case becomes HTTP.

Every context refuses with :mod:`secretum.access.errors`: one denial type
(:class:`~secretum.access.errors.AccessDenied`), one step-up signal
(:class:`~secretum.access.errors.StepUpRequired`), the shredded record
(:class:`~secretum.access.errors.RecordErased`) and the other
:class:`~secretum.access.errors.Refused` (bad input, a rule of the domain). Here they get their
status, the FHIR API's OperationOutcome and the pages' message key; the two route classes
(:class:`secretum.web.care_pages.CarePageRoute`, :class:`secretum.web.routes.fhir_api.FhirRoute`)
only render what this module decides: a page, or JSON.

A policy refusal's reason (``deny.no-consent``...) is logged and, on the pages, explained to the
signed-in person in words (``reason.<code>``); the FHIR API never sends it (one fixed body).
"""

from __future__ import annotations

from typing import Any

from secretum.access.errors import AccessDenied, RecordErased, Refused, StepUpRequired
from secretum.imaging.render import BadRenderRequest, CannotRender
from secretum.logs import get_logger
from secretum.records.fhir import (
    FhirError,
    FileTooLarge,
    ResourceNotFound,
    UnsupportedContentType,
    operation_outcome,
)

#: The answer of the FHIR API to every request the policy refuses: one fixed body.
FORBIDDEN = operation_outcome("forbidden", "access denied")
STEP_UP = operation_outcome(
    "login", "step-up required: prove a second factor again (/account/step-up)"
)
_log = get_logger("secretum.web.fhir")


def needs_step_up(exc: BaseException) -> bool:
    """The refusal would turn into a yes after a step-up (the one step-up signal)."""
    return isinstance(exc, StepUpRequired)


def fhir_refusal(exc: Refused) -> tuple[int, dict[str, Any]]:
    """The status and OperationOutcome of a refusal (fixed texts: the input is never echoed;
    a policy refusal is :data:`FORBIDDEN`, its reason logged, not sent)."""
    if isinstance(exc, StepUpRequired):
        return 401, STEP_UP
    if isinstance(exc, AccessDenied):
        _log.info("fhir.denied", reason=exc.reason)
        return 403, FORBIDDEN
    if isinstance(exc, FhirError):
        return exc.status, exc.outcome
    return exc.status, operation_outcome(exc.code, exc.diagnostics)


def page_refusal(exc: Refused) -> tuple[int, str]:
    """The status and message key (care catalogue) of a refusal shown as a page."""
    if isinstance(exc, AccessDenied):
        _log.info("page.denied", reason=exc.reason)
        return 403, f"reason.{exc.reason}"
    if isinstance(exc, RecordErased):
        return 410, "error.erased"
    if isinstance(exc, ResourceNotFound):
        return 404, "error.not_found"
    if isinstance(exc, FileTooLarge):
        return 413, "error.too_large"
    if isinstance(exc, UnsupportedContentType):
        return 415, "error.content_type"
    return exc.status, "error.invalid"


def imaging_refusal(exc: Refused) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a refused DICOMweb rendering request. A study the caller
    may not see and one that does not exist answer alike (404, one fixed body): a Study
    Instance UID must not be probed for existence. A step-up answers 401; a frame that cannot
    be rendered its own status (406), a malformed parameter 400 (fixed texts)."""
    if isinstance(exc, StepUpRequired):
        return 401, {"error": "step-up required"}
    if isinstance(exc, AccessDenied):
        _log.info("dicomweb.denied", reason=exc.reason)
        return 404, NOT_FOUND
    if isinstance(exc, ResourceNotFound):
        return 404, NOT_FOUND
    if isinstance(exc, RecordErased):
        return 404, NOT_FOUND
    if isinstance(exc, CannotRender | BadRenderRequest):
        return exc.status, {"error": exc.diagnostics}
    return exc.status, {"error": "invalid request"}


#: The one body of a study, series, instance or frame that is unknown or not the caller's.
NOT_FOUND = {"error": "not found"}
