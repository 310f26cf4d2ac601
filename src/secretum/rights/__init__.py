"""The patient's rights (GDPR): access history, export, rectification, restriction, erasure."""

from secretum.rights.access_log import AccessEntry, AccessPage
from secretum.rights.erasure import ErasureOutcome, ErasureRun
from secretum.rights.export import RecordExport
from secretum.rights.ports import (
    CareTeamOf,
    InMemoryRestrictionFlags,
    PolicyRestrictionFlags,
    RestrictionFlags,
    Shredder,
    platform_shredder,
)
from secretum.rights.service import RightsService

__all__ = [
    "AccessEntry",
    "AccessPage",
    "CareTeamOf",
    "ErasureOutcome",
    "ErasureRun",
    "InMemoryRestrictionFlags",
    "PolicyRestrictionFlags",
    "RecordExport",
    "RestrictionFlags",
    "RightsService",
    "Shredder",
    "platform_shredder",
]
