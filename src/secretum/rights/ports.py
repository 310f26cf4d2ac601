"""Ports of the patient's-rights services to contexts they do not own.

* :data:`CareTeamOf`: who is in a patient's care team now (the care-relationship context).
* :class:`RestrictionFlags`: the GDPR art. 18 restriction flag (owned by the consent/policy
  context, which turns it into ``Facts.restricted_processing``): :class:`PolicyRestrictionFlags`
  adapts :mod:`secretum.policy.restriction`, :class:`InMemoryRestrictionFlags` is its fake.
* :class:`Shredder`: crypto-shredding of a patient's data key, audited;
  :func:`platform_shredder` adapts :func:`secretum.keys.service.audited_shred`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from secretum.keys.service import KeyPorts

#: ``also_erase(patient_id)``: what else a carried-out erasure removes, once the patient's key is
#: shredded (e.g. :meth:`secretum.imaging.archive.ImagingArchive.erase_patient`: index rows and
#: blobs that the shredding already made unreadable).
ErasureHook = Callable[[str], object]

#: ``care_team_of(conn, patient_id, now)``: user ids of the practitioners caring for the patient.
CareTeamOf = Callable[[Connection, str, datetime], list[str]]


class RestrictionFlags(Protocol):
    """The patient's restriction of processing (GDPR art. 18), set in the caller's transaction."""

    def set_restricted(
        self, conn: Connection, patient_id: str, restricted: bool, now: datetime
    ) -> None: ...

    def is_restricted(self, conn: Connection, patient_id: str, now: datetime) -> bool: ...


class InMemoryRestrictionFlags:
    """Fake of :class:`RestrictionFlags` for tests (not transactional)."""

    def __init__(self) -> None:
        self.flags: dict[str, tuple[bool, datetime]] = {}

    def set_restricted(
        self, conn: Connection, patient_id: str, restricted: bool, now: datetime
    ) -> None:
        self.flags[patient_id] = (restricted, now)

    def is_restricted(self, conn: Connection, patient_id: str, now: datetime) -> bool:
        return self.flags.get(patient_id, (False, now))[0]


class PolicyRestrictionFlags:
    """The real flags: :mod:`secretum.policy.restriction` (append-only history), whose state
    ``load_facts`` turns into ``Facts.restricted_processing``."""

    def set_restricted(
        self, conn: Connection, patient_id: str, restricted: bool, now: datetime
    ) -> None:
        from secretum.policy.restriction import set_restriction

        set_restriction(conn, patient_id, restricted, now)

    def is_restricted(self, conn: Connection, patient_id: str, now: datetime) -> bool:
        from secretum.policy.restriction import is_restricted

        return is_restricted(conn, patient_id, now)


class Shredder(Protocol):
    """Destroys the data key of ``patient_id`` and audits it (success or failure)."""

    def __call__(self, patient_id: str, *, actor_id: str, actor_role: str) -> None: ...


def platform_shredder(platform: KeyPorts) -> Shredder:
    """The real shredder: :func:`~secretum.keys.service.audited_shred` on the key ports (the
    platform's database, audit log, key ring and clock)."""
    from secretum.keys.service import audited_shred

    def shred(patient_id: str, *, actor_id: str, actor_role: str) -> None:
        audited_shred(platform, patient_id, actor_id=actor_id, actor_role=actor_role)

    return shred
