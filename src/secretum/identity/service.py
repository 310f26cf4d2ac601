"""The identity service: every use case the web layer calls, in one object.

Construction (the bootstrap does it once)::

    service = IdentityService(
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

Every method takes ``now`` (aware datetime); methods that act for a signed-in user take the raw
``session_id`` from the cookie and re-validate it. Errors are :class:`~.errors.IdentityError`
subclasses with a stable ``code``. The use cases live in :mod:`.service_accounts` (set-up,
invitations, registration), :mod:`.service_admin` (status, profile, password),
:mod:`.service_signin` (password, second factor, passkey), :mod:`.service_factors`
(credentials, TOTP, recovery codes), :mod:`.service_stepup` and :mod:`.service_sessions`.
"""

from __future__ import annotations

from secretum.identity.service_admin import AdminOps
from secretum.identity.service_factors import FactorOps
from secretum.identity.service_sessions import SessionOps
from secretum.identity.service_signin import SignInOps
from secretum.identity.service_stepup import StepUpOps


class IdentityService(AdminOps, SignInOps, StepUpOps, FactorOps, SessionOps):
    """Accounts, sign-in, second factors, sessions and step-up (see the module docstring)."""
