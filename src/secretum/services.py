"""The use cases of a running platform, wired once from its adapters (:class:`Ports`: the
composition root, :mod:`secretum.bootstrap`, passes its ``Platform``).

The web layer reaches these (``request.app.state.services``); it never builds one itself.
Sessions and brute-force counters live in the main database by default, in Redis when
``SECRETUM_REDIS_URL`` is set (several stateless instances share them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection, Engine

from secretum.agenda.service import AgendaService, AgendaSettings
from secretum.audit.log import AuditLog
from secretum.config import Settings
from secretum.consent.service import ConsentService
from secretum.consult.model import ConsultSettings
from secretum.consult.rooms import Hub, LocalHub, RedisHub
from secretum.consult.service import ConsultService
from secretum.consult.signaling import Calls
from secretum.consult.turn import TurnConfig
from secretum.crypto.blind_index import BlindIndex
from secretum.identity.accounts import AccountStore
from secretum.identity.directory import StaffDirectory
from secretum.identity.factor_store import StoredCredential
from secretum.identity.model import IdentitySettings
from secretum.identity.ratelimit import DbRateLimiter, RateLimiter
from secretum.identity.service import Identity
from secretum.identity.service_base import IdentityCore, Who
from secretum.identity.sessions import DbSessionStore, SessionStore, Timeouts
from secretum.identity.webauthn import WebAuthnConfig, credential_ref
from secretum.imaging.archive import ImagingArchive
from secretum.imaging.export import DeidentifiedExport
from secretum.imaging.nodes import NodeRegistry
from secretum.imaging.viewing import TICKET_SECRET, ImagingViewer
from secretum.keys.keyring import KeyRing
from secretum.localtime import zone
from secretum.mail import Mailer, build_mailer
from secretum.notices.reads import NoticeReads
from secretum.policy import care
from secretum.policy.breakglass import BreakGlassService
from secretum.policy.choices import PatientChoices
from secretum.policy.guard import PolicyGuard
from secretum.policy.reads import CareReads
from secretum.policy.referrals import CareTeamService
from secretum.radiology.service import ReportService
from secretum.radiology.signing import RelyingParty, SignerKey
from secretum.records.documents import DocumentService, FileLimits
from secretum.records.files import FileStore
from secretum.records.service import RecordService
from secretum.records.store import RecordStore
from secretum.rights.oversight import OversightService
from secretum.rights.ports import PolicyRestrictionFlags, platform_shredder
from secretum.rights.service import RightsService
from secretum.storage.blobs import BlobStore


class Ports(Protocol):
    """The adapters the use cases are wired on (the composition root's ``Platform`` is one):
    settings, the main database, the key ring, the blind index, the audit log, the record and
    file stores, the clock. The wiring never sees the composition root itself."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def keyring(self) -> KeyRing: ...

    @property
    def blind_index(self) -> BlindIndex: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def records(self) -> RecordStore: ...

    @property
    def files(self) -> FileStore: ...

    @property
    def imaging_blobs(self) -> BlobStore: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def audit_public_key(self) -> Ed25519PublicKey: ...


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
    agenda: AgendaService
    imaging: ImagingArchive
    #: de-identified export of studies (zip, STOW-RS)
    imaging_export: DeidentifiedExport
    #: the radiologist's worklist, reports and their signatures
    reports: ReportService
    #: viewing sessions over the archive (the viewer's frames: one audit entry per opening)
    imaging_viewer: ImagingViewer
    #: the registered imaging nodes (DIMSE and DICOMweb clients with a certificate)
    imaging_nodes: NodeRegistry
    #: read models of the pages (ids, codes, names of staff: no health data)
    directory: StaffDirectory
    care_reads: CareReads
    notices: NoticeReads
    #: the DPO's reads of the audit trail (through the door)
    oversight: OversightService
    #: teleconsultation calls: the join decision, and this instance's signaling sockets
    consult: ConsultService
    calls: Calls


def webauthn_config(base_url: str, extra_origins: list[str]) -> WebAuthnConfig:
    """Relying party id = the host of the public URL; origins = that URL (+ extras)."""
    host = urlsplit(base_url).hostname or "localhost"
    return WebAuthnConfig(rp_id=host, rp_name="Secretum", origins=(base_url, *extra_origins))


def _session_and_limits(platform: Ports) -> tuple[SessionStore, RateLimiter]:
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


@dataclass(frozen=True)
class AccountContacts:
    """The agenda's names and addresses, opened from the accounts (sealed with each person's
    key), as the practice pages do."""

    accounts: AccountStore

    def display_name(self, conn: Connection, user_id: str) -> str | None:
        row = self.accounts.by_id(conn, user_id)
        return None if row is None else self.accounts.open_personal(row).display_name

    def email(self, conn: Connection, user_id: str) -> str | None:
        row = self.accounts.by_id(conn, user_id)
        return None if row is None else self.accounts.open_personal(row).email


def _calls(platform: Ports, consult: ConsultService) -> Calls:
    """The signaling of this instance: rooms in process, or across instances through Redis."""
    s = platform.settings

    def hub() -> Hub:
        if s.redis_url:
            return RedisHub.from_url(s.redis_url, s.redis_prefix)
        return LocalHub()

    turn = None
    if s.turn_urls and s.turn_secret is not None:
        secret = s.turn_secret.get_secret_value().encode()
        turn = TurnConfig(tuple(s.turn_urls), secret, s.turn_ttl_seconds)
    return Calls(
        consult,
        hub,
        clock=platform.clock,
        turn=turn,
        recheck_seconds=s.consult_recheck_seconds,
        witnessed=platform.audit.witnessed_async,
    )


@dataclass(frozen=True)
class IdentitySignerKeys:
    """The radiology context's :class:`~secretum.radiology.signing.SignerKeys`: the WebAuthn
    credentials of the identity context (passkeys and security keys)."""

    core: IdentityCore

    @staticmethod
    def _key(cred: StoredCredential) -> SignerKey:
        return SignerKey(
            cred.credential_id,
            cred.user_id,
            cred.public_key,
            cred.sign_count,
            cred.blocked_at is not None,
        )

    def keys_of(self, user_id: str) -> list[SignerKey]:
        with self.core.read() as conn:
            return [self._key(c) for c in self.core.factors.credentials_of(conn, user_id)]

    def key(self, credential_id: bytes) -> SignerKey | None:
        with self.core.read() as conn:
            cred = self.core.factors.credential(conn, credential_ref(credential_id))
        return None if cred is None else self._key(cred)

    def record_use(self, conn: Connection, key: SignerKey, sign_count: int, now: datetime) -> bool:
        cred = self.core.factors.credential(conn, credential_ref(key.credential_id))
        if cred is None or cred.sign_count != key.sign_count:
            return False
        return self.core.factors.record_use(conn, cred, sign_count, False, now)


def build_services(platform: Ports) -> Services:
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
    guard = PolicyGuard()
    records = RecordService(
        platform.engine,
        platform.records,
        platform.files,
        platform.blind_index,
        platform.audit,
        guard,
    )
    shred_key = platform_shredder(platform)

    def shred(patient_id: str, *, actor_id: str, actor_role: str) -> None:
        """Erasure: the patient's key shredded, then their account closed for good."""
        shred_key(patient_id, actor_id=actor_id, actor_role=actor_role)
        identity.admin.close_erased(patient_id, now=platform.clock(), who=Who(actor_id, actor_role))

    imaging = ImagingArchive(
        platform.engine,
        platform.keyring,
        platform.imaging_blobs,
        platform.blind_index,
        platform.audit,
        guard,
        max_instance_bytes=s.max_instance_mib * 1024 * 1024,
    )
    mailer = build_mailer(s)
    agenda = AgendaService(
        platform.engine,
        platform.audit,
        guard,
        mailer=mailer,
        contacts=AccountContacts(identity.core.accounts),
        settings=AgendaSettings(
            tz=zone(s.timezone),
            platform_url=s.base_url,
            change_delay=timedelta(hours=s.agenda_change_delay_hours),
            reminder_lead=timedelta(hours=s.agenda_reminder_hours),
        ),
        notes=records,
    )
    documents = DocumentService(records, FileLimits(max_bytes=s.max_upload_mib * 1024 * 1024))
    consult = ConsultService(
        platform.engine,
        platform.audit,
        guard,
        contacts=AccountContacts(identity.core.accounts),
        settings=ConsultSettings(
            waiting_room=timedelta(minutes=s.waiting_room_minutes),
            grace=timedelta(minutes=s.consult_grace_minutes),
            recheck_seconds=s.consult_recheck_seconds,
        ),
        documents=documents,
    )
    return Services(
        identity=identity,
        consent=ConsentService(platform.engine, platform.audit, guard),
        choices=PatientChoices(platform.engine, platform.audit, guard),
        care_team=CareTeamService(platform.engine, platform.audit, guard),
        break_glass=BreakGlassService(
            platform.engine,
            platform.keyring,
            platform.audit,
            guard,
            duration=timedelta(minutes=s.break_glass_minutes),
        ),
        records=records,
        documents=documents,
        rights=RightsService(
            records,
            care_team_of=care_team_ids,
            flags=PolicyRestrictionFlags(),
            shred=shred,
            retention_years=s.retention_years,
            also_erase=[imaging.erase_patient],
        ),
        mailer=mailer,
        agenda=agenda,
        imaging=imaging,
        imaging_export=DeidentifiedExport(imaging),
        reports=ReportService(
            platform.engine,
            records,
            imaging,
            IdentitySignerKeys(identity.core),
            RelyingParty(identity.core.webauthn.rp_id, identity.core.webauthn.origins),
            CareReads(platform.engine).referred_patients_of,
        ),
        imaging_viewer=ImagingViewer(
            imaging,
            lambda: platform.keyring.secret(TICKET_SECRET, generate=lambda: os.urandom(32)),
        ),
        imaging_nodes=NodeRegistry(platform.engine, platform.audit),
        directory=StaffDirectory(platform.engine, identity.core.accounts),
        care_reads=CareReads(platform.engine),
        notices=NoticeReads(platform.engine),
        oversight=OversightService(
            platform.engine, platform.audit, guard, platform.audit_public_key
        ),
        consult=consult,
        calls=_calls(platform, consult),
    )
