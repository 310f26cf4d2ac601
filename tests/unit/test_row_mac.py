"""The row-MAC recipe: a canonical, unambiguous encoding, and tags that bind every part of it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secretum.crypto.row_mac import ROW_MAC_KEY_SIZE, RowMac, encode_row

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.datetimes(timezones=st.just(UTC)),
)
names = st.text(max_size=6)
rows = st.tuples(
    names,
    st.lists(values, max_size=3).map(tuple),
    st.lists(st.tuples(names, values), max_size=3).map(tuple),
)


def _canonical(value: object) -> object:
    """What the encoding keeps of a value: its type and (for times) the instant."""
    return (type(value).__name__, value)


@given(rows, rows)
def test_distinct_rows_never_share_an_encoding(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    def key(row: tuple) -> object:  # type: ignore[type-arg]
        table, ids, fields = row
        return (
            table,
            tuple(_canonical(v) for v in ids),
            tuple((n, _canonical(v)) for n, v in fields),
        )

    if key(a) != key(b):
        assert encode_row(*a) != encode_row(*b)
    else:
        assert encode_row(*a) == encode_row(*b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("t", ("ab",), ()), ("t", ("a", "b"), ())),  # a split identity
        (("t", ("a",), (("b", None),)), ("t", ("a", "b"), ())),  # identity vs field
        (("t", (), (("x", ""),)), ("t", (), (("x", None),))),  # empty vs missing
        (("t", (), (("x", 1),)), ("t", (), (("x", True),))),  # int vs bool
        (("t", (), (("x", "1"),)), ("t", (), (("x", 1),))),  # text vs int
        (("t", (), (("x", b"a"),)), ("t", (), (("x", "a"),))),  # bytes vs text
        (("ta", (), ()), ("t", ("a",), ())),  # table name vs identity
        (("t", (), (("ab", "c"),)), ("t", (), (("a", "bc"),))),  # name vs value
    ],
)
def test_ambiguous_looking_rows_encode_apart(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    assert encode_row(*a) != encode_row(*b)


def test_one_instant_encodes_alike_naive_utc_or_in_any_zone() -> None:
    aware = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
    naive = aware.replace(tzinfo=None)  # how SQLite gives it back
    paris = aware.astimezone(timezone(timedelta(hours=1)))
    encodings = {encode_row("t", (), (("at", when),)) for when in (aware, naive, paris)}
    assert len(encodings) == 1
    later = aware + timedelta(microseconds=1)
    assert encode_row("t", (), (("at", later),)) not in encodings


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_row("t", (), (("x", 1.5),))  # type: ignore[arg-type]


@given(rows)
def test_a_tag_verifies_for_its_row_only(row: tuple) -> None:  # type: ignore[type-arg]
    mac = RowMac(os.urandom(ROW_MAC_KEY_SIZE))
    table, ids, fields = row
    tag = mac.tag(table, ids, fields)
    assert len(tag) == 32
    assert mac.verify(table, ids, fields, tag)
    assert not mac.verify(table + "x", ids, fields, tag)
    assert not mac.verify(table, (*ids, "x"), fields, tag)
    assert not mac.verify(table, ids, (*fields, ("x", None)), tag)
    assert not mac.verify(table, ids, fields, bytes(32))
    assert not mac.verify(table, ids, fields, None)
    assert not mac.verify(table, ids, fields, tag[:-1])
    other = RowMac(os.urandom(ROW_MAC_KEY_SIZE))
    assert not other.verify(table, ids, fields, tag)


def test_the_key_is_checked_and_never_shown() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        RowMac(b"short")
    key = os.urandom(ROW_MAC_KEY_SIZE)
    assert key.hex() not in repr(RowMac(key)) and "hidden" in repr(RowMac(key))
