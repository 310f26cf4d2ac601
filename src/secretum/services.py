"""The use cases of a running platform, wired once from a :class:`~secretum.bootstrap.Platform`.

The web layer reaches these (``request.app.state.services``); it never builds one itself.
Sessions and brute-force counters live in the main database by default, in Redis when
``SECRETUM_REDIS_URL`` is set (several stateless instances share them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.engine import Connection

from secretum.consent.choices import PatientChoices
from secretum.consent.service import ConsentService
from secretum.identity.model import IdentitySettings
from secretum.identity.ratelimit import DbRateLimiter, RateLimiter
from secretum.identity.service import Identity
from secretum.identity.service_base import Who
from secretum.identity.sessions import DbSessionStore, SessionStore, Timeouts
from secretum.identity.webauthn import WebAuthnConfig
from secretum.mail import Mailer, build_mailer
from secretum.policy import care
from secretum.policy.breakglass import BreakGlassService
from secretum.policy.referrals import CareTeamService
from secretum.records.documents import DocumentService, FileLimits
from secretum.records.guard import PolicyGuard
from secretum.records.service import RecordService
from secretum.rights.ports import PolicyRestrictionFlags, platform_shredder
from secretum.rights.service import RightsService

if TYPE_CHECKING:
    from secretum.bootstrap import Platform


@dataclass
class Services:
    identity: Identity
    consent: ConsentService
    choices: PatientChoices
    care_team: CareTeamService
    break_glass: BreakGlassService
    records: RecordService
    documents: DocumentService
    rights: RightsService
    mailer: Mailer


def webauthn_config(base_url: str, extra_origins: list[str]) -> WebAuthnConfig:
    """Relying party id = the host of the public URL; origins = that URL (+ extras)."""
    host = urlsplit(base_url).hostname or "localhost"
    return WebAuthnConfig(rp_id=host, rp_name="Secretum", origins=(base_url, *extra_origins))


def _session_and_limits(platform: Platform) -> tuple[SessionStore, RateLimiter]:
    s = platform.settings
    timeouts = Timeouts(
        idle=timedelta(minutes=s.session_idle_minutes),
        absolute=timedelta(hours=s.session_absolute_hours),
    )
    if s.redis_url:
        import redis

        from secretum.identity.redis_adapters import RedisRateLimiter, RedisSessionStore

        client = redis.Redis.from_url(s.redis_url)
        prefix = s.redis_prefix
        return (
            RedisSessionStore(client, prefix, timeouts=timeouts),
            RedisRateLimiter(client, prefix),
        )
    return DbSessionStore(platform.engine, timeouts), DbRateLimiter(platform.engine)


def care_team_ids(conn: Connection, patient_id: str, now: datetime) -> list[str]:
    """Ids of the practitioners in the patient's care team now."""
    return sorted({r.practitioner_id for r in care.care_team(conn, patient_id, now)})


def build_services(platform: Platform) -> Services:
    s = platform.settings
    sessions, limiter = _session_and_limits(platform)
    identity = Identity.build(
        platform.engine,
        keyring=platform.keyring,
        blind_index=platform.blind_index,
        audit=platform.audit,
        sessions=sessions,
        rate_limiter=limiter,
        webauthn=webauthn_config(s.base_url, s.extra_origins),
        settings=IdentitySettings(
            allow_patient_self_registration=s.allow_patient_self_registration,
            mfa_required_for_patients=s.mfa_required_for_patients,
        ),
    )
    records = RecordService.from_platform(platform, PolicyGuard())
    shred_key = platform_shredder(platform)

    def shred(patient_id: str, *, actor_id: str, actor_role: str) -> None:
        """Erasure: the patient's key shredded, then their account closed for good."""
        shred_key(patient_id, actor_id=actor_id, actor_role=actor_role)
        identity.admin.close_erased(patient_id, now=platform.clock(), who=Who(actor_id, actor_role))

    return Services(
        identity=identity,
        consent=ConsentService(platform.audit),
        choices=PatientChoices(platform.audit),
        care_team=CareTeamService(platform.audit),
        break_glass=BreakGlassService(
            platform.keyring, platform.audit, duration=timedelta(minutes=s.break_glass_minutes)
        ),
        records=records,
        documents=DocumentService(records, FileLimits(max_bytes=s.max_upload_mib * 1024 * 1024)),
        rights=RightsService(
            records,
            care_team_of=care_team_ids,
            flags=PolicyRestrictionFlags(),
            shred=shred,
            retention_years=s.retention_years,
        ),
        mailer=build_mailer(s),
    )
