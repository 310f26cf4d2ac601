"""Moved to :mod:`secretum.access.model` (issue 9: the vocabulary every context shares sits
below them all, which breaks the consent <-> policy import cycle).

Kept as a re-export only so that branches written against the old path still import while
they are merged; new code imports :mod:`secretum.access.model`. To be deleted once merged.
"""

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

__all__ = [
    "AUDIT_PURPOSE",
    "CONSENTED_PURPOSES",
    "Action",
    "Actor",
    "Decision",
    "Facts",
    "Purpose",
    "Resource",
    "Role",
    "Sensitivity",
]
