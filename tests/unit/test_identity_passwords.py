"""Argon2id password hashing, rehash on parameter change, and the strength rule."""

from __future__ import annotations

import pytest

from secretum.identity.errors import WeakPassword
from secretum.identity.passwords import (
    DEFAULT_ARGON2,
    FAST_ARGON2,
    MAX_LENGTH,
    Argon2Params,
    PasswordHasher,
    check_strength,
)

STRONG = "violet tractor mumbles under seven lanterns"


def test_hash_is_argon2id_and_verifies() -> None:
    hasher = PasswordHasher(FAST_ARGON2)
    encoded = hasher.hash(STRONG)
    assert encoded.startswith("$argon2id$")
    assert STRONG not in encoded
    assert hasher.verify(encoded, STRONG)
    assert not hasher.verify(encoded, STRONG + "!")
    assert hasher.hash(STRONG) != encoded  # salted


def test_unknown_account_never_verifies() -> None:
    hasher = PasswordHasher(FAST_ARGON2)
    assert not hasher.verify(None, "secretum-dummy-password")  # the dummy's own password
    assert not hasher.verify("not a hash", STRONG)
    assert not hasher.verify(hasher.hash(STRONG), "x" * (MAX_LENGTH + 1))


def test_parameters_change_asks_for_a_rehash() -> None:
    old = PasswordHasher(FAST_ARGON2)
    new = PasswordHasher(Argon2Params(time_cost=2, memory_cost=16, parallelism=1))
    encoded = old.hash(STRONG)
    assert not old.needs_rehash(encoded)
    assert new.needs_rehash(encoded)
    assert new.verify(encoded, STRONG)  # old hashes still verify, then get replaced
    assert not new.needs_rehash(new.hash(STRONG))


def test_default_parameters_are_argon2id_with_real_cost() -> None:
    assert DEFAULT_ARGON2.memory_cost >= 19 * 1024 and DEFAULT_ARGON2.time_cost >= 2


def test_strong_passphrase_is_accepted() -> None:
    check_strength(STRONG, ("alice@example.org", "Alice Martin"))


@pytest.mark.parametrize(
    "password",
    ["short1!", "password1234", "qwertyuiopasdfg", "aaaaaaaaaaaaaaaa", "1234567890123"],
)
def test_weak_passwords_are_refused_with_feedback(password: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        check_strength(password)
    assert refused.value.code == "weak-password"
    assert refused.value.feedback
    assert all(line in str(refused.value) for line in refused.value.feedback)


def test_short_password_says_so() -> None:
    with pytest.raises(WeakPassword) as refused:
        check_strength("Xq7#vB9!pL")
    assert any("12 characters" in line for line in refused.value.feedback)


def test_password_made_of_the_users_own_data_is_refused() -> None:
    # strong on its own, weak once zxcvbn knows the user's name and e-mail
    password = "bernadette.fourcade1975"
    with pytest.raises(WeakPassword):
        check_strength(password, ("bernadette.fourcade1975@example.org", "Bernadette Fourcade"))


def test_zxcvbn_feedback_is_listed() -> None:
    with pytest.raises(WeakPassword) as refused:
        check_strength("password123456")
    text = " ".join(refused.value.feedback)
    assert "commonly used password" in text


def test_overlong_password_is_refused() -> None:
    with pytest.raises(WeakPassword):
        PasswordHasher(FAST_ARGON2).hash("x" * (MAX_LENGTH + 1))


@pytest.mark.parametrize(
    "password", ["capucine1987", "bonjour2023!", "Marseille13!", "jetaime12345"]
)
def test_common_french_passwords_are_refused(password: str) -> None:
    """zxcvbn alone knows English only: these passed it before the French word list."""
    with pytest.raises(WeakPassword):
        check_strength(password)


def test_a_french_passphrase_is_accepted() -> None:
    check_strength("violette tracteur marmonne lanternes")
