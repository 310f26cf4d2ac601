"""The one family of refusals every context raises, and the web layer maps to HTTP in one place
(:mod:`secretum.web.refusals`).

* :class:`Refused`: a request refused for the caller's reasons (bad input, a rule of the
  domain, the policy). The door audits it as a minor failure (outcome 4); anything else that
  escapes a use case is a serious failure (outcome 8). ``status`` and ``code`` are the HTTP
  status and the FHIR ``IssueType`` of the refusal, for the transports that need them.
* :class:`AccessDenied`: the policy said no. Its ``decision`` (``reason``, a stable code such
  as ``deny.no-consent``) is for the audit and the logs; the message is a fixed text, so that
  nothing echoing an exception can hand the reason to a client that should not learn it.
* :class:`StepUpRequired`: the one step-up signal: the policy would say yes after a fresh second
  factor (``decision.requires == ("step-up",)``).
* :class:`Tampered`: a row the request rests on failed its integrity check.
* :class:`RecordErased`: the patient's data key was shredded (GDPR erasure, 410).
"""

from __future__ import annotations

from secretum.access.model import Decision
from secretum.crypto.errors import KeyShreddedError

#: The decision the door records when a row failed its integrity check.
TAMPERED = Decision(False, "deny.tampered")


class Refused(Exception):
    """A request refused for the caller's reasons (audited as a minor failure)."""

    status = 400
    code = "invalid"

    def __init__(self, diagnostics: str, *, code: str | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        if code is not None:
            self.code = code


class AccessDenied(Refused):
    """The policy refused; ``decision.reason`` says why (kept for the audit and the logs)."""

    status = 403
    code = "forbidden"

    def __init__(self, decision: Decision) -> None:
        super().__init__("access denied")
        self.decision = decision

    @property
    def reason(self) -> str:
        return self.decision.reason


class StepUpRequired(AccessDenied):
    """Allowed once the actor obtains ``decision.requires`` (a fresh second factor)."""

    status = 401
    code = "login"


class Tampered(AccessDenied):
    """A row the request rests on failed its integrity check: refused, audited as tampering."""

    def __init__(self) -> None:
        super().__init__(TAMPERED)


class RecordErased(Refused, KeyShreddedError):
    """The patient's data key was shredded (GDPR erasure): the data is gone for good (410)."""

    status = 410
    code = "deleted"


def refuse(decision: Decision) -> None:
    """Raise the refusal a negative ``decision`` calls for (nothing when it allows)."""
    if decision.requires:
        raise StepUpRequired(decision)
    if not decision.allowed:
        raise AccessDenied(decision)
