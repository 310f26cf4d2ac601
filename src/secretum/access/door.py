"""The door every use case of every context goes through: decided once, audited once.

:class:`Door` runs one use case (an :class:`Attempt`, built from the
:class:`~secretum.access.context.RequestContext`): one transaction in which the use case asks
the :class:`~secretum.access.guard.Guard` (once, :meth:`Door.authorize`) and does its work, and
exactly one audit entry (DICOM event id, subtype, C/R/U/D/E, ids, v3 PurposeOfUse, outcome)
written in that same transaction. A refused or failed attempt rolls everything back and is
audited in a transaction of its own, with a failure outcome: 4 (minor) for a refusal
(:class:`~secretum.access.errors.Refused`, or input the use case rejected: ``ValueError``,
``LookupError``), 8 (serious) for anything else. A refusal of the policy
(:class:`~secretum.access.errors.AccessDenied`) writes its reason code (``deny.no-consent``...)
in the entry's ``outcome_desc``: the reason goes to the audit, never to the client.

A row that fails its integrity check (:class:`~secretum.storage.integrity.RowTampered`: an
index row rolled back or relabelled, a forged care relationship, consent or grant) refuses the
request as :class:`~secretum.access.errors.Tampered` (403, reason ``deny.tampered``), audited
as tampering: the attempt's entry with outcome 12 (major failure) and ``outcome_desc``
``deny.tampered``, and a Security Alert
(DCM 110113) entry beside it. A shredded key ends as
:class:`~secretum.access.errors.RecordErased` (410).

Use cases that only read go through :meth:`Door.read`: their work runs on a reading connection
(no write lock: reads run side by side), and their audit entry is committed right after it,
with those of concurrent reads (group commit), before the result is returned. It is
synchronous and blocking (database, KMS unwraps): a coroutine calls it in a worker thread
(``await asyncio.to_thread(...)`` or Starlette's ``run_in_threadpool``); there is no second,
asynchronous copy of the path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.errors import (
    TAMPERED,
    AccessDenied,
    RecordErased,
    Refused,
    Tampered,
    refuse,
)
from secretum.access.guard import Guard
from secretum.access.model import (
    AUDIT_PURPOSE,
    Action,
    Actor,
    Decision,
    Purpose,
    Resource,
    Sensitivity,
)
from secretum.audit.log import AuditLog
from secretum.audit.model import (
    ID_PATTERN,
    OUTCOME_DESC_PATTERN,
    AuditEvent,
    EventAction,
    EventType,
    Outcome,
)
from secretum.crypto.errors import KeyShreddedError
from secretum.storage.db import reader
from secretum.storage.integrity import RowTampered

T = TypeVar("T")
#: v3 PurposeOfUse code of an access that rides on a break-the-glass grant.
BREAK_GLASS_PURPOSE = "ETREAT"
#: Exceptions that are the caller's doing (audited as a minor failure, outcome 4).
CALLER_ERRORS: tuple[type[Exception], ...] = (Refused, ValueError, LookupError)


@dataclass
class Attempt:
    """What a use case is doing, filled in as it learns it; becomes its audit entry."""

    ctx: RequestContext
    event_type: str
    subtype: str | None
    action: str  # audit EventAction code: C R U D E
    resource_type: str | None = None
    resource_id: str | None = None
    patient_id: str | None = None
    decision: Decision | None = None
    #: entries the work adds beside the attempt's (written with it, only on success)
    also: list[AuditEvent] = field(default_factory=list)

    @property
    def actor(self) -> Actor:
        return self.ctx.actor

    @property
    def purpose(self) -> Purpose:
        return self.ctx.purpose

    @property
    def now(self) -> datetime:
        return self.ctx.now

    def target(
        self, resource_type: str | None, resource_id: str | None, patient_id: str | None = None
    ) -> None:
        """Name the resource acted on; ids that are not ids are left out of the audit."""
        if resource_type and resource_id and ID_PATTERN.fullmatch(resource_id):
            self.resource_type, self.resource_id = resource_type, resource_id
        if patient_id and ID_PATTERN.fullmatch(patient_id):
            self.patient_id = patient_id

    def event(self, outcome: Outcome, outcome_desc: str | None = None) -> AuditEvent:
        broke_glass = self.decision is not None and self.decision.break_glass
        return AuditEvent(
            recorded=self.ctx.now,
            event_type=self.event_type,
            action=self.action,
            actor_id=self.ctx.actor.user_id,
            actor_role=str(self.ctx.actor.role),
            outcome=outcome,
            subtype=self.subtype,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            patient_id=self.patient_id,
            purpose=BREAK_GLASS_PURPOSE if broke_glass else AUDIT_PURPOSE[self.ctx.purpose],
            source_address=self.ctx.source_address,
            outcome_desc=outcome_desc,
        )


@dataclass(frozen=True)
class Scope:
    """What a decision lets a query see: the patients and the sensitivity labels. Listing
    queries take it as a required argument, so that none can forget to narrow by it."""

    patient_ids: frozenset[str]
    labels: frozenset[Sensitivity]

    @classmethod
    def of(cls, patient_id: str, *labels: Sensitivity) -> Scope:
        return cls(frozenset({patient_id}), frozenset(labels or (Sensitivity.NORMAL,)))


class Door:
    """Runs use cases: guard once, work, audit once; all in one transaction."""

    def __init__(self, engine: Engine, audit: AuditLog, guard: Guard) -> None:
        self.engine = engine
        self.reads = reader(engine)
        self.audit = audit
        self.guard = guard

    def run(self, attempt: Attempt, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` must call :meth:`authorize` once; its result is returned after commit.

        Any exception rolls the work back, is audited (see the module docstring) in a new
        transaction, and propagates.
        """
        try:
            with self.engine.begin() as conn:
                result = self._work(attempt, work, conn)
                self.audit.append_many(conn, [attempt.event(Outcome.SUCCESS), *attempt.also])
        except Exception as exc:
            for event in _failure_events(attempt, exc):
                self.audit.append_committed(event)
            raise
        return result

    def read(self, attempt: Attempt, work: Callable[[Connection], T]) -> T:
        """As :meth:`run`, for a ``work`` that only reads: it runs on a reading connection
        (:func:`~secretum.storage.db.reader`: no write lock); the audit entry is then committed
        (:meth:`AuditLog.append_committed`, shared with concurrent reads) before the result is
        returned. If that commit fails, the result is not returned. Blocking: call it from a
        worker thread on an event loop."""
        try:
            with self.reads.connect() as conn, conn.begin():
                result = self._work(attempt, work, conn)
            for event in (attempt.event(Outcome.SUCCESS), *attempt.also):
                self.audit.append_committed(event)
        except Exception as exc:
            for event in _failure_events(attempt, exc):
                self.audit.append_committed(event)
            raise
        return result

    @staticmethod
    def _work(attempt: Attempt, work: Callable[[Connection], T], conn: Connection) -> T:
        try:
            result = work(conn)
        except RowTampered as exc:
            if attempt.decision is None:
                attempt.decision = TAMPERED
            raise Tampered() from exc
        except KeyShreddedError as exc:
            if isinstance(exc, RecordErased):
                raise
            raise RecordErased("the patient's data was erased") from exc
        if attempt.decision is None:
            raise RuntimeError("a use case must ask the guard")
        return result

    def authorize(
        self, conn: Connection, attempt: Attempt, action: Action, resource: Resource
    ) -> Decision:
        """Ask the guard (once per use case); AccessDenied unless allowed, StepUpRequired (an
        AccessDenied) when the decision names what the actor must still obtain."""
        if attempt.decision is not None:
            raise RuntimeError("a use case asks the guard once")
        attempt.target(resource.kind, resource.resource_id, resource.patient_id)
        ctx = attempt.ctx
        decision = self.guard.check(conn, ctx.actor, action, resource, ctx.purpose, ctx.now)
        attempt.decision = decision
        refuse(decision)
        return decision

    def rule(self, attempt: Attempt, decision: Decision) -> Decision:
        """Record a decision the use case makes by a rule of its own instead of the guard's
        (only the holder of a grant stops it; only the patient makes their own choices): it
        counts as the attempt's one decision, and raises as the guard's would when negative."""
        if attempt.decision is not None:
            raise RuntimeError("a use case asks the guard once")
        attempt.decision = decision
        refuse(decision)
        return decision

    def permits(
        self, conn: Connection, attempt: Attempt, action: Action, resource: Resource
    ) -> bool:
        """A scoping question after :meth:`authorize` (may restricted rows be shown too?):
        answers without raising; never widens the first answer's step-up requirements."""
        ctx = attempt.ctx
        decision = self.guard.check(conn, ctx.actor, action, resource, ctx.purpose, ctx.now)
        return decision.allowed and not decision.requires

    def scope(
        self,
        conn: Connection,
        attempt: Attempt,
        action: Action,
        resource: Resource,
        *,
        restricted_present: bool,
    ) -> Scope:
        """Authorize ``action`` on the patient's normal data, then the :class:`Scope` of the
        query: restricted data too if the patient has some (``restricted_present``) and the
        guard also allows it."""
        self.authorize(conn, attempt, action, resource)
        if resource.patient_id is None:
            raise ValueError("a scope is about one patient")
        labels = {Sensitivity.NORMAL}
        restricted = Resource(resource.kind, resource.patient_id, None, Sensitivity.RESTRICTED)
        if restricted_present and self.permits(conn, attempt, action, restricted):
            labels.add(Sensitivity.RESTRICTED)
        return Scope(frozenset({resource.patient_id}), frozenset(labels))


def attempt(
    ctx: RequestContext, event_type: str, subtype: str | None, action: EventAction | str
) -> Attempt:
    """A new :class:`Attempt` (``attempt(ctx, EventType.PATIENT_RECORD, "read", "R")``)."""
    return Attempt(ctx, event_type, subtype, str(action))


def _failure(attempt: Attempt, exc: Exception) -> AuditEvent:
    """The audit entry of a refused (MINOR_FAILURE) or failed (SERIOUS_FAILURE) attempt, or
    of one that met tampered data (MAJOR_FAILURE)."""
    if isinstance(exc, Tampered):
        return attempt.event(Outcome.MAJOR_FAILURE, TAMPERED.reason)
    outcome = Outcome.MINOR_FAILURE if isinstance(exc, CALLER_ERRORS) else Outcome.SERIOUS_FAILURE
    return attempt.event(outcome, _reason(exc))


def _reason(exc: Exception) -> str | None:
    """The reason code a refusal goes to the audit with (the policy's ``decision.reason``),
    only if it is a code: the client only ever gets the fixed "access denied"."""
    if isinstance(exc, AccessDenied):
        reason = exc.reason
        if OUTCOME_DESC_PATTERN.fullmatch(reason):
            return reason
    return None


def _failure_events(attempt: Attempt, exc: Exception) -> list[AuditEvent]:
    """The attempt's failure entry; for tampering, a Security Alert entry beside it (same
    actor, resource and patient: ids and codes only, never which value was changed)."""
    entry = _failure(attempt, exc)
    if not isinstance(exc, Tampered):
        return [entry]
    alert = AuditEvent(
        recorded=entry.recorded,
        event_type=EventType.SECURITY_ALERT,
        action=EventAction.EXECUTE,
        actor_id=entry.actor_id,
        actor_role=entry.actor_role,
        outcome=Outcome.MAJOR_FAILURE,
        resource_type=entry.resource_type,
        resource_id=entry.resource_id,
        patient_id=entry.patient_id,
        purpose=entry.purpose,
        source_address=entry.source_address,
        outcome_desc=entry.outcome_desc,
    )
    return [entry, alert]


def sensitivity_max(values: Iterable[Sensitivity]) -> Sensitivity:
    """RESTRICTED if any is restricted."""
    return Sensitivity.RESTRICTED if Sensitivity.RESTRICTED in set(values) else Sensitivity.NORMAL
