"""The guard port (may this actor do this, now?) and the door every use case goes through.

:class:`Guard` is the narrow port to the policy: ``check(conn, actor, action, resource, purpose,
now) -> Decision``. :class:`PolicyGuard` is the real adapter (``secretum.policy.facts.load_facts``
then the pure ``secretum.policy.decide``, imported lazily); the table-driven :class:`TableGuard`
is the fake for tests (``TableGuard([allow()])`` says yes to everything). Every guard denies by
default.

:class:`Door` runs one use case: one transaction in which the use case asks the guard (once)
and does its work, and exactly one audit entry (DICOM event id, FHIR restful subtype, C/R/U/E,
ids, v3 PurposeOfUse, outcome) written in that same transaction. A refused or failed attempt
rolls everything back and is audited in a transaction of its own, with a failure outcome.
A row that fails its integrity check (:class:`~secretum.storage.integrity.RowTampered`: an
index row rolled back or relabelled, a forged care relationship, consent or grant) refuses the
request as :class:`Tampered` (403, reason ``deny.tampered``), audited as tampering: the attempt's
entry with outcome 12 (major failure) and a Security Alert (DCM 110113) entry beside it.
Use cases that only read go through :meth:`Door.read`: their work runs on a reading connection
(no write lock: reads run side by side), and their audit entry is committed right after it,
with those of concurrent reads (group commit), before the result is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine

from secretum.audit.log import AuditLog
from secretum.audit.model import ID_PATTERN, AuditEvent, EventAction, EventType, Outcome
from secretum.crypto.errors import KeyShreddedError
from secretum.policy.model import (
    AUDIT_PURPOSE,
    Action,
    Actor,
    Decision,
    Purpose,
    Resource,
    Role,
    Sensitivity,
)
from secretum.records.fhir import AccessDenied, FhirError, RecordErased, StepUpRequired
from secretum.storage.db import reader
from secretum.storage.integrity import RowTampered

T = TypeVar("T")
DEFAULT_DENY = Decision(False, "deny.default")
#: v3 PurposeOfUse code of an access that rides on a break-the-glass grant.
BREAK_GLASS_PURPOSE = "ETREAT"
TAMPERED = Decision(False, "deny.tampered")


class Tampered(AccessDenied):
    """A row the request rests on failed its integrity check: refused, audited as tampering."""

    def __init__(self) -> None:
        super().__init__(TAMPERED)


class Guard(Protocol):
    """May ``actor`` do ``action`` on ``resource`` for ``purpose`` at ``now``? Default deny."""

    def check(
        self,
        conn: Connection,
        actor: Actor,
        action: Action,
        resource: Resource,
        purpose: Purpose,
        now: datetime,
    ) -> Decision: ...


class PolicyGuard:
    """The real guard: facts from the stores, then the pure decision function."""

    def check(
        self,
        conn: Connection,
        actor: Actor,
        action: Action,
        resource: Resource,
        purpose: Purpose,
        now: datetime,
    ) -> Decision:
        from secretum.policy.decide import decide
        from secretum.policy.facts import load_facts

        facts = load_facts(conn, actor, resource.patient_id, now)
        decision: Decision = decide(actor, action, resource, purpose, now, facts)
        return decision


@dataclass(frozen=True)
class Call:
    """One question a fake guard was asked."""

    actor: Actor
    action: Action
    resource: Resource
    purpose: Purpose


@dataclass(frozen=True)
class Rule:
    """A row of :class:`TableGuard`: ``None`` matches anything."""

    decision: Decision
    user_id: str | None = None
    role: Role | None = None
    action: Action | None = None
    kind: str | None = None
    patient_id: str | None = None
    sensitivity: Sensitivity | None = None
    purpose: Purpose | None = None

    def matches(self, actor: Actor, action: Action, resource: Resource, purpose: Purpose) -> bool:
        wanted = (
            (self.user_id, actor.user_id),
            (self.role, actor.role),
            (self.action, action),
            (self.kind, resource.kind),
            (self.patient_id, resource.patient_id),
            (self.sensitivity, resource.sensitivity),
            (self.purpose, purpose),
        )
        return all(rule is None or rule == value for rule, value in wanted)


@dataclass
class TableGuard:
    """A fake guard driven by a table of rules: the first matching rule decides, else deny."""

    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def check(
        self,
        conn: Connection,
        actor: Actor,
        action: Action,
        resource: Resource,
        purpose: Purpose,
        now: datetime,
    ) -> Decision:
        self.calls.append(Call(actor, action, resource, purpose))
        for rule in self.rules:
            if rule.matches(actor, action, resource, purpose):
                return rule.decision
        return DEFAULT_DENY


def allow(reason: str = "allow.test", **match: object) -> Rule:
    """A :class:`Rule` that allows (``allow(role=Role.PATIENT, action=Action.READ)``)."""
    return Rule(Decision(True, reason), **match)  # type: ignore[arg-type]


def deny(reason: str = "deny.test", **match: object) -> Rule:
    return Rule(Decision(False, reason), **match)  # type: ignore[arg-type]


# -- the door: one question, one transaction, one audit entry -----------------------------------


@dataclass
class Attempt:
    """What a use case is doing, filled in as it learns it; becomes its audit entry."""

    actor: Actor
    purpose: Purpose
    now: datetime
    event_type: str
    subtype: str
    action: str  # audit EventAction code: C R U D E
    source_address: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    patient_id: str | None = None
    decision: Decision | None = None

    def target(
        self, resource_type: str | None, resource_id: str | None, patient_id: str | None = None
    ) -> None:
        """Name the resource acted on; ids that are not ids are left out of the audit."""
        if resource_type and resource_id and ID_PATTERN.fullmatch(resource_id):
            self.resource_type, self.resource_id = resource_type, resource_id
        if patient_id and ID_PATTERN.fullmatch(patient_id):
            self.patient_id = patient_id

    def event(self, outcome: Outcome) -> AuditEvent:
        broke_glass = self.decision is not None and self.decision.break_glass
        return AuditEvent(
            recorded=self.now,
            event_type=self.event_type,
            action=self.action,
            actor_id=self.actor.user_id,
            actor_role=str(self.actor.role),
            outcome=outcome,
            subtype=self.subtype,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            patient_id=self.patient_id,
            purpose=BREAK_GLASS_PURPOSE if broke_glass else AUDIT_PURPOSE[self.purpose],
            source_address=self.source_address,
        )


class Door:
    """Runs use cases: guard once, work, audit once; all in one transaction."""

    def __init__(self, engine: Engine, audit: AuditLog, guard: Guard) -> None:
        self.engine = engine
        self.reads = reader(engine)
        self.audit = audit
        self.guard = guard

    def run(self, attempt: Attempt, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` must call :meth:`authorize` once; its result is returned after commit.

        Any exception rolls the work back, is audited (MINOR_FAILURE for a refused request,
        SERIOUS_FAILURE otherwise) in a new transaction, and propagates.
        """
        try:
            with self.engine.begin() as conn:
                result = self._work(attempt, work, conn)
                self.audit.append(conn, attempt.event(Outcome.SUCCESS))
        except Exception as exc:
            for event in _failure_events(attempt, exc):
                self.audit.append_committed(event)
            raise
        return result

    def read(self, attempt: Attempt, work: Callable[[Connection], T]) -> T:
        """As :meth:`run`, for a ``work`` that only reads: it runs on a reading connection
        (:func:`~secretum.storage.db.reader`: no write lock); the audit entry is then committed
        (:meth:`AuditLog.append_committed`, shared with concurrent reads) before the result is
        returned. If that commit fails, the result is not returned."""
        try:
            result = self._read_only(attempt, work)
            self.audit.append_committed(attempt.event(Outcome.SUCCESS))
        except Exception as exc:
            for event in _failure_events(attempt, exc):
                self.audit.append_committed(event)
            raise
        return result

    async def read_async(self, attempt: Attempt, work: Callable[[Connection], T]) -> T:
        """:meth:`read` for a coroutine on the event loop: the work (reads only, which never
        wait for a lock) runs here; the audit commit is awaited, so the loop serves other
        requests meanwhile instead of a thread waiting for it."""
        try:
            result = self._read_only(attempt, work)
            await self.audit.append_committed_async(attempt.event(Outcome.SUCCESS))
        except Exception as exc:
            for event in _failure_events(attempt, exc):
                await self.audit.append_committed_async(event)
            raise
        return result

    def _read_only(self, attempt: Attempt, work: Callable[[Connection], T]) -> T:
        with self.reads.connect() as conn, conn.begin():
            return self._work(attempt, work, conn)

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
        decision = self.guard.check(
            conn, attempt.actor, action, resource, attempt.purpose, attempt.now
        )
        attempt.decision = decision
        if decision.requires:
            raise StepUpRequired(decision)
        if not decision.allowed:
            raise AccessDenied(decision)
        return decision

    def permits(
        self, conn: Connection, attempt: Attempt, action: Action, resource: Resource
    ) -> bool:
        """A scoping question after :meth:`authorize` (may restricted rows be shown too?):
        answers without raising; never widens the first answer's step-up requirements."""
        decision = self.guard.check(
            conn, attempt.actor, action, resource, attempt.purpose, attempt.now
        )
        return decision.allowed and not decision.requires


def _failure(attempt: Attempt, exc: Exception) -> AuditEvent:
    """The audit entry of a refused (MINOR_FAILURE) or failed (SERIOUS_FAILURE) attempt, or
    of one that met tampered data (MAJOR_FAILURE)."""
    if isinstance(exc, Tampered):
        return attempt.event(Outcome.MAJOR_FAILURE)
    outcome = Outcome.MINOR_FAILURE if isinstance(exc, FhirError) else Outcome.SERIOUS_FAILURE
    return attempt.event(outcome)


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
    )
    return [entry, alert]


def sensitivity_max(values: Iterable[Sensitivity]) -> Sensitivity:
    """RESTRICTED if any is restricted."""
    return Sensitivity.RESTRICTED if Sensitivity.RESTRICTED in set(values) else Sensitivity.NORMAL
