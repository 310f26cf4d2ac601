"""The identity use cases, one service per use case, over one shared core.

Construction (the composition root does it once)::

    identity = Identity.build(
        engine,
        keyring=keyring,                         # seals personal data with each user's key
        blind_index=BlindIndex(keyring.secret("blind-index", generate=...)),
        audit=audit_log,                         # AuditLog: one entry per call, same transaction
        sessions=DbSessionStore(engine),         # or RedisSessionStore(redis_client)
        rate_limiter=DbRateLimiter(engine),      # or RedisRateLimiter(redis_client)
        webauthn=WebAuthnConfig("secretum.example.org", "Secretum",
                                ("https://secretum.example.org",)),
        settings=IdentitySettings(...),
    )
    identity.sign_in.sign_in_password(...)

The services share an :class:`~.service_base.IdentityCore` (engine, stores, hasher, limiter,
session store, audit, randomness and their helpers) by composition; the three that run WebAuthn
ceremonies share :class:`~.service_webauthn.Ceremonies` too. None knows another: a use case
needing two of them is the caller's (the web layer's) sequence of two calls.

* :class:`~.service_accounts.Accounts`: first-admin set-up, invitations, patient
  self-registration; one's profile and password.
* :class:`~.service_signin.SignIn`: password, second factor, passkey; device cookies.
* :class:`~.service_factors.Factors`: WebAuthn credentials, TOTP, recovery codes.
* :class:`~.service_stepup.StepUp`: a fresh second factor before a sensitive act.
* :class:`~.service_sessions.Sessions`: resolve, list, end sessions.
* :class:`~.service_admin.Administration`: account status, second-factor reset, listing.

Every method takes ``now`` (aware datetime); methods that act for a signed-in user take the raw
``session_id`` from the cookie and re-validate it. Errors are :class:`~.errors.IdentityError`
subclasses with a stable ``code``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from secretum.crypto.blind_index import BlindIndex
from secretum.identity.model import IdentitySettings
from secretum.identity.ratelimit import RateLimiter
from secretum.identity.service_accounts import Accounts
from secretum.identity.service_admin import Administration
from secretum.identity.service_base import AuditSink, IdentityCore, Rng
from secretum.identity.service_factors import Factors
from secretum.identity.service_sessions import Sessions
from secretum.identity.service_signin import SignIn
from secretum.identity.service_stepup import StepUp
from secretum.identity.service_webauthn import Ceremonies
from secretum.identity.sessions import SessionStore
from secretum.identity.webauthn import WebAuthnConfig
from secretum.keys.keyring import KeyRing


@dataclass(frozen=True)
class Identity:
    """The identity services, built over one core (a namespace, not a facade: callers name
    the use case they call, ``identity.sign_in.sign_in_password(...)``)."""

    core: IdentityCore
    accounts: Accounts
    sign_in: SignIn
    factors: Factors
    step_up: StepUp
    sessions: Sessions
    admin: Administration

    @classmethod
    def build(
        cls,
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
    ) -> Identity:
        core = IdentityCore(
            engine,
            keyring=keyring,
            blind_index=blind_index,
            audit=audit,
            sessions=sessions,
            rate_limiter=rate_limiter,
            webauthn=webauthn,
            settings=settings,
            rng=rng,
        )
        ceremonies = Ceremonies(core)
        return cls(
            core=core,
            accounts=Accounts(core),
            sign_in=SignIn(core, ceremonies),
            factors=Factors(core, ceremonies),
            step_up=StepUp(core, ceremonies),
            sessions=Sessions(core),
            admin=Administration(core),
        )
