"""Identity: accounts and roles, passwords, WebAuthn passkeys and security keys, TOTP, recovery
codes, sessions, brute-force limiting, step-up. Domain code only (no web framework): the web
layer calls :class:`secretum.identity.service.Identity`.
"""
