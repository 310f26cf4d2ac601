"""The decision function: pure, total, default deny.

``decide(actor, action, resource, purpose, now, facts)`` reads nothing but its arguments and the
rule tables of :mod:`secretum.policy.rules`: no database, no clock, no randomness. The stores
gather the :class:`~secretum.access.model.Facts` (:func:`secretum.policy.facts.load_facts`) and
the repositories call this function on every read and write (enforcement where data is read).

Evaluation:

1. every guard of :data:`~secretum.policy.rules.GUARDS` whose role, action and conditions all
   match refuses the request with its reason;
2. the allow rules of :data:`~secretum.policy.rules.RULES` that apply to the role, action and
   purpose are tried in order; the first whose conditions all hold allows;
3. no rule applies: ``deny.default``. Rules apply but none allows: when one of them lacks only a
   fresh step-up, ``deny.step-up-required`` with ``requires=("step-up",)`` (the web layer asks
   for a second factor and retries); otherwise the reason of the first missing condition of the
   first applicable rule (e.g. ``deny.not-in-care-team``, ``deny.no-consent``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from secretum.access.errors import refuse
from secretum.access.model import (
    Action,
    Actor,
    Decision,
    Facts,
    Purpose,
    Resource,
    Role,
    Sensitivity,
    step_up_is_fresh,
)
from secretum.policy.rules import (
    AGENDA_KINDS,
    DEFAULT_DENY,
    DENY_REASONS,
    DIRECTORY_KINDS,
    GUARDS,
    IDENTITY_VIGILANCE_SPECIALTY,
    IMAGING_KINDS,
    OPERATIONAL_KINDS,
    RULES,
    SELECTORS,
    STEP_UP,
    Condition,
    Rule,
)


@dataclass(frozen=True, slots=True)
class Request:
    """One request under evaluation (the arguments of :func:`decide`)."""

    actor: Actor
    action: Action
    resource: Resource
    purpose: Purpose
    now: datetime
    facts: Facts


def is_health_data(resource: Resource) -> bool:
    """Whether ``resource`` may hold health data (every kind not known to be operational)."""
    return resource.kind not in OPERATIONAL_KINDS


def _own_record(r: Request) -> bool:
    return (
        r.actor.role is Role.PATIENT
        and r.resource.patient_id is not None
        and r.resource.patient_id == r.actor.user_id
    )


def _node_scope(r: Request, scope: str) -> bool:
    return r.actor.role is Role.IMAGING_NODE and scope in r.actor.scopes


_CHECKS: dict[Condition, Callable[[Request], bool]] = {
    Condition.OWN_RECORD: _own_record,
    Condition.NOT_OWN_RECORD: lambda r: not _own_record(r),
    Condition.HEALTH_DATA: lambda r: is_health_data(r.resource),
    Condition.OPERATIONAL_DATA: lambda r: not is_health_data(r.resource),
    Condition.NO_PATIENT: lambda r: r.resource.patient_id is None,
    Condition.DIRECTORY: lambda r: r.resource.kind in DIRECTORY_KINDS,
    Condition.AUDIT_ENTRY: lambda r: r.resource.kind == "AuditEvent",
    Condition.CONSENT: lambda r: r.purpose in r.facts.consents,
    Condition.CARE_TEAM: lambda r: r.facts.in_care_team,
    Condition.NAMED_IF_RESTRICTED: lambda r: (
        r.resource.sensitivity is not Sensitivity.RESTRICTED or r.facts.named_by_patient
    ),
    Condition.BREAK_GLASS: lambda r: r.facts.break_glass_active,
    Condition.STEP_UP: lambda r: step_up_is_fresh(r.actor, r.now),
    Condition.RESTRICTED_PROCESSING: lambda r: r.facts.restricted_processing,
    Condition.UNMATCHED_IMAGING: lambda r: (
        r.resource.kind in IMAGING_KINDS and r.resource.patient_id is None
    ),
    Condition.IDENTITY_VIGILANCE: lambda r: r.actor.specialty == IDENTITY_VIGILANCE_SPECIALTY,
    Condition.SLOTS: lambda r: r.resource.kind == "Slot",
    Condition.SCHEDULE: lambda r: r.resource.kind == "Schedule",
    Condition.OWN_AGENDA: lambda r: (
        r.actor.role is Role.PRACTITIONER
        and r.resource.kind in AGENDA_KINDS
        and r.resource.resource_id is not None
        and r.resource.resource_id == r.actor.user_id
    ),
    Condition.APPOINTMENT: lambda r: r.resource.kind == "Appointment",
    Condition.CALL_GUEST: lambda r: r.facts.call_guest,
    Condition.IMAGING_STUDY: lambda r: r.resource.kind in IMAGING_KINDS,
    Condition.NOT_IMAGING_STUDY: lambda r: r.resource.kind not in IMAGING_KINDS,
    Condition.NODE_STORE: lambda r: _node_scope(r, "store"),
    Condition.NODE_QUERY: lambda r: _node_scope(r, "query"),
    Condition.NODE_RETRIEVE: lambda r: _node_scope(r, "retrieve"),
}


def check(condition: Condition, request: Request) -> bool:
    """Evaluate one named condition on ``request``."""
    return _CHECKS[condition](request)


def applicable_rules(actor: Actor, action: Action, purpose: Purpose) -> list[Rule]:
    """The allow rules that apply to this role, action and purpose (in table order)."""
    return [
        rule
        for rule in RULES
        if actor.role in rule.roles and action in rule.actions and purpose in rule.purposes
    ]


def decide(
    actor: Actor,
    action: Action,
    resource: Resource,
    purpose: Purpose,
    now: datetime,
    facts: Facts,
) -> Decision:
    """Decide whether ``actor`` may do ``action`` on ``resource`` for ``purpose`` at ``now``.

    Pure: the same arguments always give the same :class:`Decision`. ``now`` must be
    timezone-aware (a naive time is a programming error: :class:`ValueError`).
    """
    if now.utcoffset() is None:
        raise ValueError("decide needs a timezone-aware 'now'")
    request = Request(actor, action, resource, purpose, now, facts)
    for guard in GUARDS:
        if (
            actor.role in guard.roles
            and action in guard.actions
            and all(check(c, request) for c in guard.when)
        ):
            return Decision(False, guard.reason)
    rules = applicable_rules(actor, action, purpose)
    if not rules:
        return Decision(False, DEFAULT_DENY)
    first_missing: Condition | None = None
    step_up_only = False
    for rule in rules:
        missing = [c for c in rule.conditions if not check(c, request)]
        if any(c in SELECTORS for c in missing):
            continue  # a rule about another kind of resource: no reason to give from it
        if not missing:
            return Decision(True, rule.reason, break_glass=rule.break_glass)
        if missing == [Condition.STEP_UP]:
            step_up_only = True
        if first_missing is None:
            first_missing = missing[0]
    if step_up_only:
        return Decision(False, DENY_REASONS[Condition.STEP_UP], requires=(STEP_UP,))
    if first_missing is None:
        return Decision(False, DEFAULT_DENY)
    return Decision(False, DENY_REASONS[first_missing])


def require(
    actor: Actor,
    action: Action,
    resource: Resource,
    purpose: Purpose,
    now: datetime,
    facts: Facts,
) -> Decision:
    """:func:`decide`, raising :class:`~secretum.access.errors.AccessDenied` (or its
    :class:`~secretum.access.errors.StepUpRequired`) when the answer is no."""
    decision = decide(actor, action, resource, purpose, now, facts)
    refuse(decision)
    return decision
