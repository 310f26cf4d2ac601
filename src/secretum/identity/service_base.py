"""What every identity service shares (:class:`IdentityCore`, held by composition, never
inherited): dependencies, transactions, audit, limits, sessions.

Transactions: a use case reads what it needs, does slow work (Argon2, signature checks) with
no transaction open, then writes its changes *and its one audit entry* in one short
transaction. A refused attempt writes its failure entry (and counts towards brute-force limits)
in a transaction of its own, after anything the attempt must spend (a WebAuthn challenge) was
committed. Session stores and rate limiters run their own transactions (or Redis), so they are
called outside ours.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from secretum.access.model import Role
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.crypto.blind_index import BlindIndex
from secretum.identity.accounts import AccountRow, AccountStore
from secretum.identity.devices import DEVICE_COOKIE_KEY, KEY_SIZE, DeviceCookies
from secretum.identity.errors import (
    CredentialBlocked,
    Forbidden,
    IdentityError,
    Locked,
    SessionExpired,
    StepUpRequired,
    Throttled,
)
from secretum.identity.factor_store import FactorStore, StoredCredential
from secretum.identity.model import (
    IdentitySettings,
    NewSession,
    Session,
    requires_step_up,
)
from secretum.identity.passwords import PasswordHasher
from secretum.identity.ratelimit import RateLimiter, Verdict
from secretum.identity.sessions import SessionGrant, SessionStore
from secretum.identity.webauthn import WebAuthnConfig
from secretum.keys.keyring import KeyRing
from secretum.notices.store import NoticeKind, notify

Rng = Callable[[int], bytes]
ANONYMOUS = "anonymous"


class AuditSink(Protocol):
    """The part of :class:`secretum.audit.log.AuditLog` the identity context uses."""

    def append(self, conn: Connection, event: AuditEvent) -> int: ...


class Ev(NamedTuple):
    """An audit event kind: DICOM event id, type code and action."""

    event_type: str
    subtype: str
    action: str


LOGIN = Ev(EventType.USER_AUTHENTICATION, "110122", EventAction.EXECUTE)
LOGOUT = Ev(EventType.USER_AUTHENTICATION, "110123", EventAction.EXECUTE)
ROLE_GRANTED = Ev(EventType.SECURITY_ALERT, "110136", EventAction.CREATE)
SETUP = Ev(EventType.SECURITY_ALERT, "110129", EventAction.CREATE)
ATTRS_CREATED = Ev(EventType.SECURITY_ALERT, "110137", EventAction.CREATE)
ATTRS_CHANGED = Ev(EventType.SECURITY_ALERT, "110137", EventAction.UPDATE)
ATTRS_DELETED = Ev(EventType.SECURITY_ALERT, "110137", EventAction.DELETE)
ALERT = Ev(EventType.SECURITY_ALERT, "110137", EventAction.EXECUTE)


class Who(NamedTuple):
    """Who acts, for the audit (``anonymous`` before sign-in)."""

    user_id: str
    role: str

    @classmethod
    def of(cls, who: AccountRow | Session | None) -> Who:
        if who is None:
            return cls(ANONYMOUS, ANONYMOUS)
        return cls(who.user_id, str(who.role))


@dataclass(frozen=True)
class WebAuthnStart:
    """A started WebAuthn ceremony: pass ``options_json`` to the browser, keep
    ``ceremony_id`` (e.g. in a form field) to complete it."""

    ceremony_id: str
    options_json: str


class _CounterRegressed(CredentialBlocked):
    """Signature counter went backwards: the credential gets blocked as it is refused."""

    def __init__(self, credential: StoredCredential) -> None:
        super().__init__("signature counter went backwards: credential blocked")
        self.credential = credential


class IdentityCore:
    """What every identity use case shares, held by each of them (composition): the engine,
    the stores, the hasher, the limiter, the session store, the audit, randomness; and the
    helpers of transactions, audit entries, brute-force limits and sessions."""

    def __init__(
        self,
        engine: Engine,
        *,
        keyring: KeyRing,
        blind_index: BlindIndex,
        audit: AuditSink,
        sessions: SessionStore,
        rate_limiter: RateLimiter,
        webauthn: WebAuthnConfig,
        settings: IdentitySettings | None = None,
        rng: Rng = os.urandom,
    ) -> None:
        self.engine = engine
        self.settings = settings or IdentitySettings()
        self.accounts = AccountStore(keyring, blind_index)
        self.factors = FactorStore(keyring)
        self.audit = audit
        self.sessions = sessions
        self.limiter = rate_limiter
        self.webauthn = webauthn
        self.hasher = PasswordHasher(self.settings.argon2)
        self.rng = rng
        self.keyring = keyring
        self._devices: DeviceCookies | None = None

    # -- randomness -------------------------------------------------------------------------

    def token(self, size: int = 32) -> str:
        """A random URL-safe secret (``secrets.token_urlsafe``-shaped, from ``rng``)."""
        return base64.urlsafe_b64encode(self.rng(size)).rstrip(b"=").decode("ascii")

    def new_user_id(self) -> str:
        """A FHIR id: 32 hex characters (128 random bits)."""
        return self.rng(16).hex()

    # -- transactions and audit -------------------------------------------------------------

    def read(self) -> Connection:
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def record(
        self,
        conn: Connection,
        now: datetime,
        ev: Ev,
        who: Who,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        resource: tuple[str, str] | None = None,
        address: str | None = None,
    ) -> None:
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=ev.event_type,
                subtype=ev.subtype,
                action=ev.action,
                actor_id=who.user_id,
                actor_role=who.role,
                outcome=outcome,
                resource_type=None if resource is None else resource[0],
                resource_id=None if resource is None else resource[1],
                source_address=address,
            ),
        )

    def record_failure(
        self,
        now: datetime,
        ev: Ev,
        who: Who,
        *,
        resource: tuple[str, str] | None = None,
        address: str | None = None,
    ) -> None:
        with self.write() as conn:
            self.record(
                conn,
                now,
                ev,
                who,
                outcome=Outcome.MINOR_FAILURE,
                resource=resource,
                address=address,
            )

    @contextmanager
    def failures_audited(
        self,
        now: datetime,
        ev: Ev,
        who: Who,
        *,
        resource: tuple[str, str] | None = None,
        address: str | None = None,
    ) -> Iterator[None]:
        """Write a failure entry for an :class:`IdentityError` raised in the block."""
        try:
            yield
        except IdentityError as exc:
            if not exc.audited:
                exc.audited = True
                self.record_failure(now, ev, who, resource=resource, address=address)
            raise

    # -- brute force ------------------------------------------------------------------------

    @property
    def devices(self) -> DeviceCookies:
        """Signs and checks device cookies (key from the key ring, created on first use)."""
        if self._devices is None:
            key = self.keyring.secret(DEVICE_COOKIE_KEY, generate=lambda: self.rng(KEY_SIZE))
            self._devices = DeviceCookies(key)
        return self._devices

    @staticmethod
    def limit_keys(account_key: str | None, address: str | None) -> list[str]:
        keys = [] if account_key is None else [account_key]
        return keys + ([] if address is None else [f"addr:{address}"])

    def attempt_keys(
        self, account_key: str, address: str | None, device_cookie: str | None, now: datetime
    ) -> tuple[list[str], str | None]:
        """The limiter keys of a sign-in attempt on ``account_key`` (see :mod:`.devices`):
        ``([dev:...], dev:...)`` from a browser with a valid device cookie of this account
        whose own key is not locked; else ``([acct:..., addr:...], None)`` (untrusted)."""
        device_key = self.devices.trusted_key(device_cookie, account_key, now)
        if device_key is not None and not self.limiter.check([device_key], now).locked:
            return [device_key], device_key
        return self.limit_keys(account_key, address), None

    def check_limits(
        self, keys: list[str], now: datetime, who: Who, address: str | None, ev: Ev = LOGIN
    ) -> None:
        verdict = self.limiter.check(keys, now)
        if verdict.retry_at is not None:
            self.record_failure(now, ev, who, address=address)
            error = (Locked if verdict.locked else Throttled)(verdict.retry_at)
            error.audited = True
            raise error

    def refuse(
        self,
        exc: IdentityError,
        now: datetime,
        *,
        account: AccountRow | None,
        keys: list[str],
        address: str | None,
        ev: Ev = LOGIN,
        resource: tuple[str, str] | None = None,
    ) -> IdentityError:
        """Record a refused authentication step (limits, one audit entry, notices, blocking a
        cloned credential) and give back the error to raise."""
        if exc.audited:
            return exc
        exc.audited = True
        verdict = self.limiter.fail(keys, now) if exc.counts_as_failure and keys else Verdict()
        who = Who.of(account)
        with self.write() as conn:
            if isinstance(exc, _CounterRegressed):
                cred = exc.credential
                self.factors.block_credential(conn, cred, now)
                notify(conn, cred.user_id, NoticeKind.CREDENTIAL_BLOCKED, now, credential=cred.ref)
                self.record(
                    conn,
                    now,
                    ALERT,
                    who,
                    outcome=Outcome.SERIOUS_FAILURE,
                    resource=("Credential", cred.ref),
                    address=address,
                )
            elif verdict.locked_keys:
                if account is not None and account.limit_key in verdict.locked_keys:
                    until = verdict.retry_at.isoformat() if verdict.retry_at else ""
                    notify(conn, account.user_id, NoticeKind.ACCOUNT_LOCKED, now, until=until)
                self.record(
                    conn,
                    now,
                    ALERT,
                    who,
                    outcome=Outcome.SERIOUS_FAILURE,
                    resource=None if account is None else ("Account", account.user_id),
                    address=address,
                )
            else:
                self.record(
                    conn,
                    now,
                    ev,
                    who,
                    outcome=Outcome.MINOR_FAILURE,
                    resource=resource,
                    address=address,
                )
        return exc

    # -- sessions ---------------------------------------------------------------------------

    def session(self, session_id: str, now: datetime) -> Session:
        session = self.sessions.resolve(session_id, now)
        if session is None:
            raise SessionExpired()
        return session

    def has_factor(self, conn: Connection, user_id: str) -> bool:
        if any(c.blocked_at is None for c in self.factors.credentials_of(conn, user_id)):
            return True
        state = self.factors.totp(conn, user_id)
        return state is not None and state.secret is not None

    def fresh_session(self, session_id: str, now: datetime) -> tuple[Session, AccountRow]:
        """The session of a sensitive act: a second factor within the step-up window; or an
        enrolment session; or, for an account with no second factor at all, a password or
        passkey proved within the window."""
        session = self.session(session_id, now)
        with self.read() as conn:
            row = self.accounts.by_id(conn, session.user_id)
            if row is None:
                raise SessionExpired()
            if session.enrolment_only:
                return session, row
            actor = session.to_actor()
            window = self.settings.step_up_window
            if requires_step_up(actor, now, window) and (
                self.has_factor(conn, session.user_id) or now - session.auth_at > window
            ):
                raise StepUpRequired()
        return session, row

    def admin_session(self, session_id: str, now: datetime) -> Session:
        """The session of an administrator who proved a second factor recently."""
        session = self.session(session_id, now)
        actor = session.to_actor()
        if actor.role is not Role.ADMIN:
            self.record_failure(now, ATTRS_CHANGED, Who.of(session))
            raise Forbidden("only administrators manage accounts")
        if requires_step_up(actor, now, self.settings.step_up_window):
            raise StepUpRequired()
        return session

    def grant(
        self,
        row: AccountRow,
        strong_auth_at: datetime | None,
        device_ref: str,
        enrolment_only: bool = False,
    ) -> SessionGrant:
        return SessionGrant(
            user_id=row.user_id,
            role=row.role,
            specialty=row.account.specialty,
            strong_auth_at=strong_auth_at,
            device_ref=device_ref,
            enrolment_only=enrolment_only,
        )

    def rotate(self, session_id: str, now: datetime, *, strong: bool) -> NewSession:
        rotated = self.sessions.rotate(
            session_id,
            now,
            strong_auth_at=now if strong else None,
            enrolment_only=False if strong else None,
        )
        if rotated is None:
            raise SessionExpired()
        return rotated
