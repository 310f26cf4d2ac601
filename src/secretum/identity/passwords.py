"""Passwords: Argon2id hashing (argon2-cffi) and a strength rule (length and zxcvbn).

Parameters (:data:`DEFAULT_ARGON2`): Argon2id, t=2, m=46 MiB (47 104 KiB), p=1, 16-byte salt,
32-byte tag. On the reference machine (2 vCPU container, argon2-cffi 25.1) one verification costs
about 75-90 ms (median of 9; t=2/m=64 MiB/p=1 costs 120-130 ms, t=1/m=46 MiB 40-55 ms), inside
the 50-100 ms budget: expensive for an attacker holding a stolen hash, cheap enough for a
sign-in. Re-measure on the production host with :func:`measure_cost`. A stored hash whose
parameters differ from the current ones is re-computed at the next successful sign-in
(:meth:`PasswordHasher.needs_rehash`). Tests pass :data:`FAST_ARGON2` to stay fast.

Strength: at least :data:`MIN_LENGTH` characters and a zxcvbn score of at least
:data:`MIN_SCORE` (3, "safely unguessable: moderate protection from offline slow-hash
scenario"), judged with the user's own e-mail and name as known inputs; a refusal lists
zxcvbn's warning and suggestions.

The keystore passphrase (:func:`check_passphrase`) follows the same rule, stricter: at least
:data:`PASSPHRASE_MIN_LENGTH` characters and zxcvbn's top score, 4 ("strong protection from
offline slow-hash scenario"), because a copy of ``keystore.json`` is exactly that scenario
and it guards every key of the platform.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn
from zxcvbn.matching import add_frequency_lists

from secretum.identity.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 1024  # bounds the hashing work an attacker can ask for
MIN_SCORE = 3
#: The keystore passphrase: every KEK behind it, open to offline guessing from a file copy.
PASSPHRASE_MIN_LENGTH = 15
PASSPHRASE_MIN_SCORE = 4
#: zxcvbn knows English only: French passwords, words and first names, most common first.
WORDLISTS = ("fr_common",)


def _load_wordlists() -> None:
    lists = {}
    for name in WORDLISTS:
        text = resources.files("secretum.identity.wordlists").joinpath(f"{name}.txt")
        words = text.read_text(encoding="utf-8").splitlines()
        lists[name] = [w.strip().lower() for w in words if w.strip() and not w.startswith("#")]
    add_frequency_lists(lists)


_load_wordlists()
_ZXCVBN_PREFIX = 100  # zxcvbn is super-linear: judge the first 100 characters


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters (RFC 9106 §4); ``memory_cost`` in KiB."""

    time_cost: int = 2
    memory_cost: int = 47_104
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16


DEFAULT_ARGON2 = Argon2Params()
#: For tests only: the smallest legal cost.
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


class PasswordHasher:
    """Hash and verify passwords with Argon2id at the given cost."""

    def __init__(self, params: Argon2Params = DEFAULT_ARGON2) -> None:
        self.params = params
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=params.hash_len,
            salt_len=params.salt_len,
            type=argon2.Type.ID,
        )
        # verified against unknown e-mails so that they cost the same time as known ones
        self._dummy = self._hasher.hash("secretum-dummy-password")

    def hash(self, password: str) -> str:
        _check_length(password)
        return self._hasher.hash(password)

    def verify(self, encoded: str | None, password: str) -> bool:
        """True if ``password`` matches ``encoded``. With ``encoded`` None (unknown account,
        no password set) a dummy hash is verified anyway, and False returned."""
        if len(password) > MAX_LENGTH:
            return False
        try:
            ok = self._hasher.verify(encoded or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and encoded is not None

    def needs_rehash(self, encoded: str) -> bool:
        """True when ``encoded`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True


def _check_length(password: str) -> None:
    if len(password) > MAX_LENGTH:
        raise WeakPassword((f"Use at most {MAX_LENGTH} characters.",))


def check_strength(
    password: str,
    user_inputs: tuple[str, ...] = (),
    *,
    min_length: int = MIN_LENGTH,
    min_score: int = MIN_SCORE,
) -> None:
    """Refuse a short or guessable password with :class:`WeakPassword` and zxcvbn's advice."""
    _check_length(password)
    feedback: list[str] = []
    if len(password) < min_length:
        feedback.append(f"Use at least {min_length} characters.")
    inputs = [part for value in user_inputs for part in value.replace("@", " ").split() if part]
    result = zxcvbn(password[:_ZXCVBN_PREFIX], user_inputs=inputs)
    if result["score"] < min_score:
        advice = result["feedback"]
        if advice.get("warning"):
            feedback.append(str(advice["warning"]))
        feedback.extend(str(s) for s in advice.get("suggestions", ()))
        if not advice.get("warning") and not advice.get("suggestions"):
            feedback.append("This password is too easy to guess.")
        feedback.append(
            "Tip: a passphrase of four or more unrelated words is strong and easy to remember."
        )
    if feedback:
        raise WeakPassword(tuple(feedback))


def check_passphrase(passphrase: str) -> None:
    """Refuse a weak keystore passphrase (:class:`WeakPassword`, with zxcvbn's advice)."""
    check_strength(passphrase, min_length=PASSPHRASE_MIN_LENGTH, min_score=PASSPHRASE_MIN_SCORE)


def measure_cost(params: Argon2Params = DEFAULT_ARGON2, rounds: int = 5) -> float:
    """Median seconds of one verification with ``params`` on this machine (an operator tool)."""
    hasher = argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=argon2.Type.ID,
    )
    encoded = hasher.hash("measure-the-cost-of-argon2id")
    times = []
    for _ in range(max(1, rounds)):
        start = time.perf_counter()
        hasher.verify(encoded, "measure-the-cost-of-argon2id")
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
