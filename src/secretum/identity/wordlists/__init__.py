"""Word lists that zxcvbn lacks (see secretum.identity.passwords)."""
