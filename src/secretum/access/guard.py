"""The guard port (may this actor do this, now?) and its table-driven fake.

:class:`Guard` is the narrow port to the policy: ``check(conn, actor, action, resource, purpose,
now) -> Decision``. The real adapter is :class:`secretum.policy.guard.PolicyGuard` (the facts
from the stores, then the pure ``secretum.policy.decide``), given to each service by the
composition root; :class:`TableGuard` is the fake for tests (``TableGuard([allow()])`` says yes
to everything). Every guard denies by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import Connection

from secretum.access.model import Action, Actor, Decision, Purpose, Resource, Role, Sensitivity

DEFAULT_DENY = Decision(False, "deny.default")


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
