"""Gather the :class:`~secretum.policy.model.Facts` of one request from the stores.

``load_facts(conn, actor, patient_id, now)`` reads, in the caller's transaction and as of
``now``: the patient's active consents (SHARING only when it names this actor), whether the
actor is in the care team, named for restricted data, or holds an unexpired break-the-glass
grant, and whether the patient restricted processing. Nothing is cached, so a withdrawal, an
ended relationship or an expired grant is seen by the very next request.

Repositories call it right before :func:`secretum.policy.decide.decide`, on every read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from secretum.consent.store import active_purposes
from secretum.policy.care import in_care_team, is_named_for_restricted
from secretum.policy.grants import has_active_grant
from secretum.policy.model import Actor, Facts, Role
from secretum.policy.restriction import is_restricted
from secretum.policy.tables import utc


def load_facts(conn: Connection, actor: Actor, patient_id: str | None, now: datetime) -> Facts:
    """What the stores know about ``actor`` and ``patient_id`` at ``now``.

    No patient (an operational resource): empty facts. Only practitioners can be in a care
    team, named, or hold a break-the-glass grant; for other roles those facts stay false.
    """
    if patient_id is None:
        return Facts()
    now = utc(now)
    consents = active_purposes(conn, patient_id, now, for_actor=actor.user_id)
    restricted = is_restricted(conn, patient_id, now)
    if actor.role is not Role.PRACTITIONER:
        return Facts(consents=consents, restricted_processing=restricted)
    return Facts(
        consents=consents,
        in_care_team=in_care_team(conn, actor.user_id, patient_id, now),
        named_by_patient=is_named_for_restricted(conn, patient_id, actor.user_id, now),
        break_glass_active=has_active_grant(conn, actor.user_id, patient_id, now),
        restricted_processing=restricted,
    )
