"""The two identity settings an administrator changes at run time: MFA for patients and patient
self-registration.

Where they live: ``<data_dir>/admin-settings.json`` (mode 0600, written atomically). The file
overrides the start-up values (``SECRETUM_MFA_REQUIRED_FOR_PATIENTS``,
``SECRETUM_ALLOW_PATIENT_SELF_REGISTRATION``) once an administrator saved the page; until then
the start-up values hold. Each read checks the file's modification time, so every process
sharing the data directory sees a change at its next request. A table would serve several
hosts better; this keeps the embedded deployment simple and needs no migration.

Applying means replacing ``IdentityCore.settings`` (a frozen dataclass) with a copy holding
the new values: the service reads them at each call. Saving is for administrators who proved
a second factor recently (the same rule as the service's administration), and is audited as
``SECURITY_ALERT`` / 110129 "Security Configuration" (update) in one transaction.
No web framework here.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from secretum.access.model import Role
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.identity.errors import Forbidden, SessionExpired, StepUpRequired
from secretum.identity.model import requires_step_up, utc

if TYPE_CHECKING:
    from secretum.bootstrap import Platform

FILE_NAME = "admin-settings.json"
SECURITY_CONFIGURATION = "110129"
_lock = threading.Lock()
_seen: dict[Path, float] = {}


@dataclass(frozen=True)
class AdminSettings:
    mfa_required_for_patients: bool
    allow_patient_self_registration: bool


def settings_path(platform: Platform) -> Path:
    return platform.settings.data_dir / FILE_NAME


def _apply(platform: Platform, values: AdminSettings) -> None:
    identity = platform.services.identity
    identity.core.settings = replace(identity.core.settings, **asdict(values))


def current(platform: Platform) -> AdminSettings:
    """The settings in force, after loading the file if it changed since the last look."""
    path = settings_path(platform)
    with _lock:
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime is not None and _seen.get(path) != mtime:
            data = json.loads(path.read_text(encoding="utf-8"))
            _apply(
                platform,
                AdminSettings(
                    bool(data.get("mfa_required_for_patients", False)),
                    bool(data.get("allow_patient_self_registration", False)),
                ),
            )
            _seen[path] = mtime
    s = platform.services.identity.core.settings
    return AdminSettings(s.mfa_required_for_patients, s.allow_patient_self_registration)


def save(
    platform: Platform,
    session_id: str,
    values: AdminSettings,
    *,
    now: datetime,
    address: str | None = None,
) -> AdminSettings:
    """Store and apply ``values`` (administrators with a fresh second factor). Raises
    SessionExpired, Forbidden, StepUpRequired."""
    now = utc(now)
    identity = platform.services.identity
    session = identity.sessions.resolve(session_id, now=now)
    if session is None:
        raise SessionExpired()
    actor = session.to_actor()
    if actor.role is not Role.ADMIN:
        raise Forbidden("only administrators change the platform's settings")
    if requires_step_up(actor, now, identity.core.settings.step_up_window):
        raise StepUpRequired()
    path = settings_path(platform)
    with platform.engine.begin() as conn:
        platform.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.SECURITY_ALERT,
                subtype=SECURITY_CONFIGURATION,
                action=EventAction.UPDATE,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                outcome=Outcome.SUCCESS,
                resource_type="Configuration",
                resource_id="identity-settings",
                source_address=address,
            ),
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(values), out, sort_keys=True)
        os.replace(tmp, path)
    return current(platform)
