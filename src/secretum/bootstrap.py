"""Composition root: Settings → adapters (databases, KMS, blobs) → services.

The only module that knows every concrete class. ``init_platform`` creates a new data
directory; ``open_platform`` opens an existing one (the CLI and the server both use it).
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy.engine import Connection, Engine

from secretum.audit.log import AuditLog
from secretum.config import Settings
from secretum.crypto.blind_index import INDEX_KEY_SIZE, BlindIndex
from secretum.crypto.errors import CryptoError
from secretum.crypto.kms import KeyManagementService, create_kms, open_kms
from secretum.crypto.row_mac import ROW_MAC_KEY_SIZE, RowMac
from secretum.keys.keyring import KeyRing, utc_now
from secretum.pki import (
    CertificateAuthority,
    ServerIdentity,
    certificate_from_pem,
    create_root_ca,
    load_or_create_server_identity,
    private_key_from_der,
    private_key_to_der,
    write_certificates_pem,
)
from secretum.records.files import FileStore
from secretum.records.store import RecordStore
from secretum.storage import integrity, schema
from secretum.storage.blobs import BlobStore
from secretum.storage.db import make_engine, reader

if TYPE_CHECKING:
    from secretum.services import Services

#: Names of the platform's own secrets in the key vault.
AUDIT_SIGNING_KEY = "audit/signing-key"
CA_KEY = "pki/ca-key"
BLIND_INDEX_KEY = "crypto/blind-index-key"
#: Authenticates the rows decisions rest on (secretum.storage.integrity); never in the main DB.
ROW_MAC_KEY = "crypto/row-mac-key"
DEV_PASSPHRASE_FILE = "dev-passphrase"  # noqa: S105 (a file name)

#: Every module that declares tables (one line per context, kept sorted). Each declares its
#: tables on the shared MetaData of :mod:`secretum.storage.db` when imported; the composition
#: root is the one place that knows them all (storage imports no context). The schema test
#: imports this list to compare the migrations with the code.
TABLE_MODULES = (
    "secretum.agenda.store",
    "secretum.audit.browse",
    "secretum.audit.store",
    "secretum.consent.paper",
    "secretum.consent.tables",
    "secretum.identity.tables",
    "secretum.imaging.tables",
    "secretum.keys.tables",
    "secretum.notices.store",
    "secretum.policy.tables",
    "secretum.radiology.tables",
    "secretum.records.tables",
)


def register_tables() -> None:
    """Import every module of :data:`TABLE_MODULES`: the metadata is then complete."""
    for name in TABLE_MODULES:
        importlib.import_module(name)


class PlatformError(RuntimeError):
    """The data directory is missing, already initialised, or cannot be unlocked."""


#: The migration that added row tags: crossing it tags the rows written before it, once.
ROW_INTEGRITY_REVISION = "0006_row_integrity"


@dataclass(frozen=True)
class MigrationReport:
    """What a migration of the platform's two databases did."""

    main: schema.Migration
    vault: schema.Migration
    #: Rows tagged per table after crossing the row-integrity migration (``None``: not crossed).
    tagged: dict[str, int] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.main.applied or self.vault.applied)


@dataclass
class Platform:
    """Everything a process of Secretum needs, wired once."""

    settings: Settings
    engine: Engine
    vault_engine: Engine
    kms: KeyManagementService
    keyring: KeyRing
    records: RecordStore
    files: FileStore
    #: Where the imaging archive's encrypted instances live (an area of their own).
    imaging_blobs: BlobStore
    blind_index: BlindIndex
    audit: AuditLog
    audit_public_key: Ed25519PublicKey
    clock: Callable[[], datetime] = field(default=utc_now)
    #: What opening the platform migrated (``init``, ``serve --dev``); ``None``: only checked.
    migration: MigrationReport | None = None

    def certificate_authority(self) -> CertificateAuthority:
        """The internal CA with its private key, unwrapped from the vault for this call."""
        cert = certificate_from_pem((self.settings.pki_dir / "ca.pem").read_bytes())
        key = private_key_from_der(self.keyring.secret(CA_KEY))
        return CertificateAuthority(cert, key)

    def server_identity(self) -> ServerIdentity:
        """The TLS server key and certificate, (re)issued by the internal CA when needed."""
        cert = certificate_from_pem((self.settings.pki_dir / "ca.pem").read_bytes())
        return load_or_create_server_identity(
            self.settings.pki_dir,
            ca_certificate=cert,
            unlock_ca=self.certificate_authority,
            names=self.settings.server_names,
            now=self.clock(),
        )

    @cached_property
    def services(self) -> Services:
        """The use cases (identity, consent, records, rights...), built on first use."""
        from secretum.services import build_services

        return build_services(self)

    def duties(self) -> list[tuple[float, Callable[[], object]]]:
        """Periodic work of a serving process, as ``(period in seconds, duty)``: audit
        checkpoints and the witness file; break-the-glass grants closed (and audited) when they
        expire; scheduled erasures shredded when their retention ends; appointment reminders
        (each sent once); blobs an interrupted upload left without a row removed after their
        grace period. Several instances may
        run them side by side: each is idempotent."""

        def audit_tick() -> object:
            return self.audit.tick(self.clock())

        def close_expired_break_glass() -> object:
            with self.engine.begin() as conn:
                return self.services.break_glass.close_expired(conn, self.clock())

        def run_due_erasures() -> object:
            return self.services.rights.run_due_erasures(self.clock())

        def send_appointment_reminders() -> object:
            return self.services.agenda.send_reminders(self.clock())

        def remove_orphan_blobs() -> object:
            with reader(self.engine).connect() as conn, conn.begin():
                files = self.files.remove_orphans(conn, self.clock())
            return files + self.services.imaging.remove_orphans(self.clock())

        return [
            (min(5.0, self.settings.audit_checkpoint_seconds), audit_tick),
            (30.0, close_expired_break_glass),
            (600.0, run_due_erasures),
            (300.0, send_appointment_reminders),
            (900.0, remove_orphan_blobs),
        ]

    def close(self) -> None:
        """Let go of the platform: first every audit entry this process committed reaches the
        witness file (WitnessError if it cannot: the caller must not report success), then the
        KMS and the engines are closed (whatever happened)."""
        try:
            self.audit.close()
        finally:
            self.kms.close()
            self.engine.dispose()
            self.vault_engine.dispose()


def dev_passphrase_path(settings: Settings) -> Path:
    return settings.data_dir / DEV_PASSPHRASE_FILE


def resolve_passphrase(settings: Settings, *, dev: bool = False) -> str | None:
    """The keystore passphrase: from the settings (environment), else the development file."""
    if settings.keystore_passphrase is not None:
        return settings.keystore_passphrase.get_secret_value()
    path = dev_passphrase_path(settings)
    if dev and path.exists():
        return path.read_text().strip()
    return None


def write_dev_passphrase(settings: Settings) -> str:
    """Generate a passphrase into ``<data_dir>/dev-passphrase`` (0600). Development only."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase = secrets.token_urlsafe(32)
    path = dev_passphrase_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(passphrase + "\n")
    return passphrase


def is_initialised(settings: Settings) -> bool:
    return (settings.data_dir / "pki" / "ca.pem").exists()


def check_keystore_passphrase(passphrase: str) -> None:
    """Refuse a weak new keystore passphrase with a one-line :class:`PlatformError`.

    The rule is the password rule of :mod:`secretum.identity.passwords`, stricter (see
    :func:`~secretum.identity.passwords.check_passphrase`): 15 characters, zxcvbn score 4.
    Checked where a passphrase is chosen (init, change), never when one opens the keystore.
    """
    from secretum.identity.errors import WeakPassword
    from secretum.identity.passwords import check_passphrase

    try:
        check_passphrase(passphrase)
    except WeakPassword as exc:
        advice = " ".join(exc.feedback)
        raise PlatformError(f"the keystore passphrase is too weak: {advice}") from None


def _kms(settings: Settings, passphrase: str | None, *, create: bool) -> KeyManagementService:
    """The KMS; a wrong passphrase or PIN, a bad keystore or token is one PlatformError line."""
    try:
        if settings.kms == "pkcs11":
            pin = settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin else None
            if pin is None:
                raise PlatformError("SECRETUM_PKCS11_PIN is required with SECRETUM_KMS=pkcs11")
            params = dict(
                module_path=settings.pkcs11_module,
                token_label=settings.pkcs11_token_label,
                pin=pin,
            )
            return create_kms("pkcs11", **params) if create else open_kms("pkcs11", **params)
        if not passphrase:
            raise PlatformError(
                "the keystore passphrase is needed: set SECRETUM_KEYSTORE_PASSPHRASE"
            )
        if create:
            return create_kms("local", path=settings.keystore_path, passphrase=passphrase)
        return open_kms("local", path=settings.keystore_path, passphrase=passphrase)
    except CryptoError as exc:  # messages of the KMS adapters hold no secret
        raise PlatformError(f"{settings.kms} KMS: {exc}") from None


def init_platform(settings: Settings, passphrase: str | None) -> Platform:
    """Create a new data directory: keystore, schemas, platform secrets, internal CA."""
    if is_initialised(settings):
        raise PlatformError(f"{settings.data_dir} is already initialised")
    if settings.kms == "local" and passphrase:
        check_keystore_passphrase(passphrase)  # before anything is written
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    kms = _kms(settings, passphrase, create=True)
    platform = _wire(settings, kms, migrate=True)
    ca = create_root_ca(platform.clock())
    platform.keyring.secret(CA_KEY, generate=lambda: private_key_to_der(ca.private_key))
    write_certificates_pem(settings.pki_dir / "ca.pem", [ca.certificate])
    platform.server_identity()
    return platform


def open_platform(
    settings: Settings | None = None,
    *,
    passphrase: str | None = None,
    dev: bool = False,
    migrate: bool = False,
) -> Platform:
    """Open an initialised data directory.

    The schemas are checked, not migrated: an old one is refused with one line that says to run
    ``secretum migrate`` (a start never changes the schema under instances already serving).
    ``migrate=True`` migrates first, under the lock (``serve --dev``: a convenience of the
    development machine; ``platform.migration`` says what was done).
    """
    settings = settings or Settings()
    if not is_initialised(settings):
        raise PlatformError(f"{settings.data_dir} is not initialised: run `secretum init`")
    passphrase = passphrase or resolve_passphrase(settings, dev=dev)
    kms = _kms(settings, passphrase, create=False)
    return _wire(settings, kms, migrate=migrate)


def migrate_platform(
    settings: Settings | None = None, *, passphrase: str | None = None
) -> MigrationReport:
    """``secretum migrate``: bring both databases to this version's schema, then close.

    Resolves the passphrase as every command does (environment, else the development file):
    the key ring is needed to tag, once, the rows an upgrade across the row-integrity
    migration finds untagged (:func:`secretum.storage.integrity_backfill.tag_untagged`).
    """
    settings = settings or Settings()
    if not is_initialised(settings):
        raise PlatformError(f"{settings.data_dir} is not initialised: run `secretum init`")
    passphrase = passphrase or resolve_passphrase(settings, dev=True)
    kms = _kms(settings, passphrase, create=False)
    engine = make_engine(settings.db_url)
    vault = make_engine(settings.key_vault_url)
    try:
        _, report = _migrate(engine, vault, kms)
        return report
    finally:
        kms.close()
        engine.dispose()
        vault.dispose()


#: Blob store adapters by scheme, imported on first use (``module:factory``, the factory taking
#: the settings): an optional backend costs nothing until configured (ARCHITECTURE rule 7).
BLOB_STORES: dict[str, str] = {"local": "secretum.storage.blobs:FileSystemBlobStore.for_settings"}
#: Schemes promised and not there yet: refused with what to expect, not "unknown".
_BLOB_STORES_LATER = {"s3": "not available yet: the scale-out issue adds it"}


def open_blob_store(settings: Settings, area: str = "files") -> BlobStore:
    """The blob store ``SECRETUM_BLOB_STORE`` names (``local``, or a URL whose scheme names
    the adapter), for one area (``files``: record attachments; ``imaging``: DICOM instances);
    an unknown or not yet available one is one PlatformError line."""
    value = settings.blob_store
    scheme = value.split("://", 1)[0] if "://" in value else value
    if scheme in _BLOB_STORES_LATER:
        raise PlatformError(f"SECRETUM_BLOB_STORE={value}: {_BLOB_STORES_LATER[scheme]}")
    target = BLOB_STORES.get(scheme)
    if target is None:
        known = ", ".join(sorted(BLOB_STORES))
        raise PlatformError(f"SECRETUM_BLOB_STORE={value}: unknown blob store (known: {known})")
    module, _, attr = target.partition(":")
    factory: object = importlib.import_module(module)
    for part in attr.split("."):
        factory = getattr(factory, part)
    store: BlobStore = factory(settings, area)  # type: ignore[operator]
    return store


def bind_row_mac(engine: Engine, keyring: KeyRing) -> None:
    """Bind the row-MAC key (a named secret of the vault, made on first use) to the main
    engine: unwrapped once per process, never stored in the main database."""
    key = keyring.secret(ROW_MAC_KEY, generate=lambda: os.urandom(ROW_MAC_KEY_SIZE))
    integrity.bind(engine, RowMac(key))


def _migrate(
    engine: Engine, vault: Engine, kms: KeyManagementService
) -> tuple[KeyRing, MigrationReport]:
    """Migrate the vault, then the main database under its lock; when the main migration
    crosses the row-integrity revision, tag the rows it found untagged in the same transaction
    (they come from the database as it was: the operator trusts it, see ``secretum migrate``).
    On a new database there is nothing to tag."""
    from secretum.storage.integrity_backfill import tag_untagged

    try:
        vault_done = schema.migrate(vault, "vault")
    except schema.SchemaTooNew as exc:
        raise PlatformError(str(exc)) from None
    keyring = KeyRing(vault, kms)  # the vault is at its newest schema from here on
    bind_row_mac(engine, keyring)
    tagged: dict[str, int] | None = None

    def backfill(conn: Connection, done: schema.Migration) -> None:
        nonlocal tagged
        if ROW_INTEGRITY_REVISION in done.applied:
            tagged = tag_untagged(conn)

    try:
        main_done = schema.migrate(engine, "main", then=backfill)
    except schema.SchemaTooNew as exc:
        raise PlatformError(str(exc)) from None
    return keyring, MigrationReport(main=main_done, vault=vault_done, tagged=tagged)


def _check_schemas(engine: Engine, vault: Engine) -> None:
    """Refuse to open on a schema this version does not expect, with one line."""
    checks: tuple[tuple[Engine, schema.Database], ...] = ((vault, "vault"), (engine, "main"))
    for eng, database in checks:
        state = schema.status(eng, database)
        if not state.up_to_date:
            raise PlatformError(schema.outdated_message(state))


def _wire(settings: Settings, kms: KeyManagementService, *, migrate: bool) -> Platform:
    register_tables()
    engine = make_engine(settings.db_url)
    vault = make_engine(settings.key_vault_url)
    report: MigrationReport | None = None
    try:
        if migrate:
            keyring, report = _migrate(engine, vault, kms)
        else:
            _check_schemas(engine, vault)
            keyring = KeyRing(vault, kms)
            bind_row_mac(engine, keyring)
    except PlatformError:
        engine.dispose()
        vault.dispose()
        kms.close()
        raise
    signing_key = Ed25519PrivateKey.from_private_bytes(
        keyring.secret(AUDIT_SIGNING_KEY, generate=lambda: os.urandom(32))
    )
    audit = AuditLog(
        engine,
        signing_key=signing_key,
        witness_path=settings.witness_path,
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
    )
    return Platform(
        settings=settings,
        engine=engine,
        vault_engine=vault,
        kms=kms,
        keyring=keyring,
        records=RecordStore(keyring),
        files=FileStore(keyring, open_blob_store(settings)),
        imaging_blobs=open_blob_store(settings, "imaging"),
        blind_index=BlindIndex(
            keyring.secret(BLIND_INDEX_KEY, generate=lambda: os.urandom(INDEX_KEY_SIZE))
        ),
        audit=audit,
        audit_public_key=signing_key.public_key(),
        migration=report,
    )
