"""Who asks, why, when, from where: the request context every use case takes first.

One frozen object instead of the ``(actor, purpose, now, ..., source_address=...)`` arguments
each use case repeated. The web layer builds it once per request (:mod:`secretum.web.deps`);
the CLI and the tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from secretum.access.model import Actor, Purpose


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The caller (``actor``), the purpose of use, the time of the request (aware), and the
    caller's IP address for the audit (None when unknown)."""

    actor: Actor
    purpose: Purpose
    now: datetime
    source_address: str | None = None

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("a request context needs a timezone-aware 'now'")

    def for_purpose(self, purpose: Purpose) -> RequestContext:
        """The same request, for another purpose (a use case whose purpose is fixed)."""
        return replace(self, purpose=purpose)

    def at(self, now: datetime) -> RequestContext:
        return replace(self, now=now)
