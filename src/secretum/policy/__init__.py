"""Access policy: rules as data (:mod:`.rules`), one pure decision function (:mod:`.decide`),
default deny.

The stores supply the facts (:func:`secretum.policy.facts.load_facts`: consents, care team,
named practitioner, break-the-glass, restriction) and the repositories enforce the decision on
every read::

    facts = load_facts(conn, actor, patient_id, now)
    decision = decide(actor, Action.READ, resource, purpose, now, facts)
    if not decision:
        raise AccessDenied(decision)        # decision.requires == ("step-up",): ask for it
    purpose_code = AUDIT_PURPOSE[Purpose.EMERGENCY if decision.break_glass else purpose]

This package imports only the pure parts; the stores live in :mod:`.facts`, :mod:`.care`,
:mod:`.breakglass` and :mod:`.restriction`.
"""

from secretum.access.errors import AccessDenied
from secretum.access.model import (
    AUDIT_PURPOSE,
    CONSENTED_PURPOSES,
    Action,
    Actor,
    Decision,
    Facts,
    Purpose,
    Resource,
    Role,
    Sensitivity,
)
from secretum.policy.decide import decide, is_health_data, require
from secretum.policy.rules import GUARDS, RULES, STEP_UP, STEP_UP_MAX_AGE

__all__ = [
    "AUDIT_PURPOSE",
    "CONSENTED_PURPOSES",
    "GUARDS",
    "RULES",
    "STEP_UP",
    "STEP_UP_MAX_AGE",
    "AccessDenied",
    "Action",
    "Actor",
    "Decision",
    "Facts",
    "Purpose",
    "Resource",
    "Role",
    "Sensitivity",
    "decide",
    "is_health_data",
    "require",
]
