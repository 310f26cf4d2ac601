"""The real :class:`~secretum.access.guard.Guard`: the facts from the stores, then the pure
decision function. The composition root gives it to every service's door."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from secretum.access.model import Action, Actor, Decision, Purpose, Resource
from secretum.policy.decide import decide
from secretum.policy.facts import load_facts


class PolicyGuard:
    """Facts (:func:`~secretum.policy.facts.load_facts`, read on every request, never cached)
    then :func:`~secretum.policy.decide.decide`."""

    def check(
        self,
        conn: Connection,
        actor: Actor,
        action: Action,
        resource: Resource,
        purpose: Purpose,
        now: datetime,
    ) -> Decision:
        call = resource.resource_id if resource.kind == "Appointment" else None
        facts = load_facts(conn, actor, resource.patient_id, now, appointment_id=call)
        return decide(actor, action, resource, purpose, now, facts)
