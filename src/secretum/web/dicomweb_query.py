"""QIDO-RS query parameters (PS3.18 8.3.4, 10.6) and matching on DICOM JSON attributes.

:func:`parse_query` turns the query string into :class:`Qido`: the matching keys (by keyword
or tag number, ``PatientID`` or ``00100020``), ``includefield`` (tags, keywords or ``all``),
``fuzzymatching``, ``limit`` and ``offset``. An unknown attribute keyword or a bad number is
:class:`BadQuery` (400). :meth:`Qido.matches` applies the keys to the attributes of one
study, series or instance (the archive unseals them; none of these values is indexed): single
values with ``*``/``?`` wildcards, UID lists (``uid1\\uid2`` or ``uid1,uid2``), date and time
ranges (``20260101-20260131``, open ends), person names with fuzzy matching (each word of the
query begins a word of the name, accents and case ignored), and multi-valued attributes
(``ModalitiesInStudy``: one of the values matches).
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

#: Query parameters that are not attribute keys.
CONTROL = frozenset({"limit", "offset", "fuzzymatching", "includefield"})
#: Largest ``limit`` honoured (the default when none is given).
MAX_LIMIT = 1000
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_RANGE_VRS = frozenset({"DA", "TM", "DT"})


class BadQuery(ValueError):
    """A query parameter the server cannot understand (400; fixed text)."""


def tag_of(key: str) -> str:
    """``00100020`` for ``PatientID`` or ``00100020`` (upper-case hex); BadQuery otherwise.
    Nested keys (``a.b``) are not supported."""
    key = key.strip()
    if _TAG.match(key):
        return key.upper()
    tag = tag_for_keyword(key)
    if tag is None:
        raise BadQuery("unknown attribute in the query")
    return f"{tag:08X}"


def vr_of(tag: str) -> str:
    try:
        return str(dictionary_VR(int(tag, 16)))
    except KeyError:
        return "UN"


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _values(attr: dict[str, Any] | None) -> list[str]:
    """The values of a DICOM JSON attribute as strings (a PN's Alphabetic group)."""
    if not attr:
        return []
    out = []
    for value in attr.get("Value", []):
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        out.append(str(value))
    return out


def _wildcard(pattern: str, value: str, *, fold: bool) -> bool:
    if fold:
        pattern, value = _fold(pattern), _fold(value)
    if "*" in pattern or "?" in pattern:
        escaped = pattern.replace("[", "[[]")
        return fnmatch.fnmatchcase(value, escaped)
    return pattern == value


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\^\s,=]+", _fold(text)) if w]


def _fuzzy_name(pattern: str, value: str) -> bool:
    """Each word of the query (wildcards dropped) begins one word of the name."""
    wanted = _words(pattern.replace("*", " ").replace("?", " "))
    have = _words(value)
    return all(any(h.startswith(w) for h in have) for w in wanted)


def _in_range(pattern: str, value: str) -> bool:
    low, _, high = pattern.partition("-")
    value = value.strip()
    if not value:
        return False
    if low and value[: len(low)] < low:
        return False
    return not (high and value[: len(high)] > high)


@dataclass
class Qido:
    """A parsed QIDO query (see the module docstring)."""

    keys: dict[str, str] = field(default_factory=dict)
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    fuzzy: bool = False
    limit: int = MAX_LIMIT
    offset: int = 0

    def value(self, *tags: str) -> str:
        """The query's value for the first of ``tags`` it has ('' if none)."""
        for tag in tags:
            if self.keys.get(tag):
                return self.keys[tag]
        return ""

    def uid_list(self, tag: str) -> list[str]:
        raw = self.keys.get(tag, "")
        return [u.strip() for u in re.split(r"[\\,]", raw) if u.strip()]

    def matches(self, attrs: dict[str, Any], *, skip: Iterable[str] = ()) -> bool:
        """Every key (but ``skip``) matches ``attrs``; an empty key matches anything."""
        skipped = set(skip)
        for tag, pattern in self.keys.items():
            if not pattern or tag in skipped:
                continue
            if not self._match_one(tag, pattern, attrs.get(tag)):
                return False
        return True

    def _match_one(self, tag: str, pattern: str, attr: dict[str, Any] | None) -> bool:
        values = _values(attr)
        if not values:
            return False
        vr = (attr or {}).get("vr") or vr_of(tag)
        if vr == "UI":
            wanted = set(self.uid_list(tag))
            return any(v in wanted for v in values)
        if vr in _RANGE_VRS and "-" in pattern:
            return any(_in_range(pattern, v) for v in values)
        if vr == "PN":
            if self.fuzzy:
                return any(_fuzzy_name(pattern, v) for v in values)
            return any(_wildcard(pattern, v, fold=True) for v in values)
        return any(_wildcard(pattern, v, fold=False) for v in values)

    def page(self, items: list[Any]) -> list[Any]:
        return items[self.offset : self.offset + self.limit]


def _number(value: str, what: str, maximum: int) -> int:
    if not value.isdigit() or len(value) > 9:
        raise BadQuery(f"{what} must be a non-negative integer")
    return min(int(value), maximum)


def parse_query(params: Iterable[tuple[str, str]]) -> Qido:
    """The QIDO query of a request's ``(name, value)`` pairs (repeated keys are joined as a
    list, as ``includefield`` may be repeated)."""
    q = Qido()
    for name, raw in params:
        value = raw.strip()
        lowered = name.strip().lower()
        if lowered == "limit":
            q.limit = _number(value, "limit", MAX_LIMIT)
        elif lowered == "offset":
            q.offset = _number(value, "offset", 10**9)
        elif lowered == "fuzzymatching":
            if value.lower() not in ("true", "false", ""):
                raise BadQuery("fuzzymatching is true or false")
            q.fuzzy = value.lower() == "true"
        elif lowered == "includefield":
            for item in (i.strip() for i in value.split(",")):
                if item.lower() == "all":
                    q.include_all = True
                elif item:
                    q.include.add(tag_of(item))
        elif name.startswith("_"):
            continue  # cache busters some clients add (``_=1712345678``)
        else:
            tag = tag_of(name)
            previous = q.keys.get(tag)
            joined = f"{previous}\\{value}" if previous and value else None
            q.keys[tag] = joined or value or previous or ""
    return q


def keyword(tag: str) -> str:
    """The keyword of a tag (for messages and tests); the tag itself if it has none."""
    try:
        return str(keyword_for_tag(int(tag, 16))) or tag
    except ValueError:
        return tag
