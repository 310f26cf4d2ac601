"""Settings: the only place where the environment is read.

Values come, highest priority first, from ``SECRETUM_*`` environment variables, then from the
TOML file named by ``SECRETUM_CONFIG`` (or ``<data_dir>/secretum.toml``), then the defaults below.
The defaults are the *embedded* deployment: everything under one data directory (SQLite in WAL
mode, encrypted files on disk, a local keystore file, the internal CA).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from secretum.localtime import DEFAULT_ZONE, zone


def _default_data_dir() -> Path:
    return Path(os.environ.get("SECRETUM_DATA_DIR", "./var")).resolve()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SECRETUM_", extra="forbid")

    data_dir: Path = Field(default_factory=_default_data_dir)
    #: SQLAlchemy URL of the main database. Default: SQLite file in the data directory.
    database_url: str | None = None
    #: SQLAlchemy URL of the key vault (wrapped data keys). Kept apart from the main database so
    #: that restoring a database backup never brings back a shredded key.
    vault_url: str | None = None

    #: Where encrypted files live: ``local`` (``<data_dir>/blobs``). ``s3://bucket/prefix``
    #: comes with the scale-out issue (refused with a clear message until then).
    blob_store: str = "local"

    kms: Literal["local", "pkcs11"] = "local"
    keystore_passphrase: SecretStr | None = None
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "secretum"  # noqa: S105 (a label, not a secret)
    pkcs11_pin: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = 8443
    #: Host names and addresses the server certificate is issued for.
    server_names: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])

    #: The address people type: WebAuthn's relying party and allowed origin derive from it.
    #: Default: https://localhost:<port>.
    public_url: str | None = None
    #: More origins WebAuthn accepts (e.g. a second host name of the same site).
    extra_origins: list[str] = Field(default_factory=list)
    #: Redis URL: sessions and brute-force counters shared by several instances.
    redis_url: str | None = None
    #: Prefix of every Redis key (several platforms may share one Redis).
    redis_prefix: str = "secretum:"
    session_idle_minutes: int = 15
    session_absolute_hours: int = 12
    allow_patient_self_registration: bool = False
    mfa_required_for_patients: bool = False
    #: Legal retention of medical records (France: 20 years) before erasure shreds at once.
    retention_years: int = 20
    break_glass_minutes: int = 60
    max_upload_mib: int = 50
    #: Largest DICOM instance the imaging archive accepts (a Part-10 file is checked in memory).
    max_instance_mib: int = 512
    #: DIMSE over TLS 1.3 (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE) inside ``secretum serve``:
    #: off unless ``SECRETUM_DICOM_ENABLED=true`` (``secretum dicom`` runs it alone). Only
    #: registered imaging nodes (``secretum imaging node add``) are let in, each with its
    #: client certificate from the internal CA. It listens on ``host``.
    dicom_enabled: bool = False
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    dicom_ae_title: str = "SECRETUM"

    #: Mail relay for invitations and registration links: ``smtps://user:pass@host:465`` or
    #: ``smtp://user:pass@host:587`` (STARTTLS required; TLS 1.3 only). Default: no relay, the
    #: messages are written to ``<data_dir>/outbox`` as ``.eml`` files.
    smtp_url: SecretStr | None = None
    mail_from: str = "Secretum <no-reply@localhost>"

    #: The clinic's time zone (IANA name): every time a person reads is shown in it.
    timezone: str = DEFAULT_ZONE

    #: The agenda: a patient cancels or moves an appointment up to this many hours before it;
    #: reminders go out this many hours before (``SECRETUM_AGENDA_CHANGE_DELAY_HOURS``, ...).
    agenda_change_delay_hours: int = Field(default=24, ge=0)
    agenda_reminder_hours: int = Field(default=24, ge=1)

    #: Teleconsultation calls (secretum.consult): the waiting room opens this many minutes
    #: before the slot; a call may run this many minutes past its end; a live call re-checks
    #: the policy (consent, care relationship, time) this often.
    waiting_room_minutes: int = Field(default=10, ge=0, le=240)
    consult_grace_minutes: int = Field(default=30, ge=0, le=240)
    consult_recheck_seconds: float = Field(default=15.0, gt=0, le=600)
    #: TURN relays for the calls (coturn with ``use-auth-secret``): their URLs
    #: (``turns:turn.example:5349?transport=tcp``) and the shared secret of the TURN REST API.
    #: Without them, calls go peer to peer (fine on one machine or one network).
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl_seconds: int = Field(default=3600, ge=60, le=86400)

    audit_checkpoint_every: int = 1000
    audit_checkpoint_seconds: float = 60.0

    log_level: str = "INFO"

    #: Test mode of the call page (``SECRETUM_CALL_TEST_HOOKS``): the page honours
    #: ``window.__secretumTest`` (force a wrong key, relay only, capture frames, export the
    #: epoch's keys) for the browser tests and benchmarks. Never on a real platform.
    call_test_hooks: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Europe/Paris)") from exc
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'secretum.db'}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"https://localhost:{self.port}").rstrip("/")

    @property
    def key_vault_url(self) -> str:
        return self.vault_url or f"sqlite:///{self.data_dir / 'keys' / 'vault.db'}"

    @property
    def keystore_path(self) -> Path:
        return self.data_dir / "keys" / "keystore.json"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def blob_area_dir(self, area: str) -> Path:
        """The folder of a blob area other than the record files (``imaging``)."""
        return self.data_dir / f"blobs-{area}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def witness_path(self) -> Path:
        return self.data_dir / "audit" / "witness.log"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("SECRETUM_CONFIG") or str(_default_data_dir() / "secretum.toml")
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )
