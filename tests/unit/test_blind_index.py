"""Blind index: exact match through a keyed MAC, never the clear value."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secretum.crypto.blind_index import BlindIndex, normalise

KEY = os.urandom(32)


def test_same_identifier_same_index_after_normalisation() -> None:
    index = BlindIndex(KEY)
    assert index("email", " Jeanne.Dupont@Example.org ") == index(
        "email", "jeanne.dupont@example.org"
    )
    assert index("ins", "2 84 05 75 123 456 78") == index("ins", "284057512345678")


def test_kinds_are_separated_and_key_matters() -> None:
    index = BlindIndex(KEY)
    assert index("email", "a@b.fr") != index("login", "a@b.fr")
    assert index("email", "a@b.fr") != BlindIndex(os.urandom(32))("email", "a@b.fr")


@given(st.text(min_size=1), st.text(min_size=1))
def test_distinct_values_distinct_index(a: str, b: str) -> None:
    index = BlindIndex(KEY)
    same = normalise("name", a) == normalise("name", b)
    assert (index("name", a) == index("name", b)) == same


def test_stored_value_does_not_contain_the_identifier() -> None:
    value = BlindIndex(KEY)("email", "jeanne@example.org")
    assert b"jeanne" not in value and len(value) == 32
    assert BlindIndex(KEY).matches("email", "JEANNE@example.org", value)
    assert not BlindIndex(KEY).matches("email", "jean@example.org", value)


def test_bad_keys_and_kinds() -> None:
    with pytest.raises(ValueError):
        BlindIndex(b"short")
    with pytest.raises(ValueError):
        BlindIndex(KEY)("", "x")
    assert KEY.hex() not in repr(BlindIndex(KEY))
