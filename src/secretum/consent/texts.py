"""Consent texts: versioned documents, one per purpose, version and language.

They ship as package data, ``secretum/consent/texts/<purpose>.v<version>.<language>.md``
(e.g. ``teleconsultation.v1.fr.md``), in Markdown whose first line is the title. A text is
identified by the SHA-256 of its bytes: the hash is what a consent records as "the text the
patient saw", so any change to a text, even a comma, is a new document. A published text is
never edited: a new wording is a new version file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from hashlib import sha256
from importlib import resources
from importlib.resources.abc import Traversable

from secretum.access.model import CONSENTED_PURPOSES, Purpose

LANGUAGES = ("fr", "en")
#: ``<prefix><hex sha256>`` names one exact text (e.g. the FHIR Consent ``policy.uri``)
TEXT_URN_PREFIX = "urn:secretum:consent-text:sha256:"
_NAME = re.compile(r"(?P<purpose>[a-z][a-z-]*)\.v(?P<version>[1-9][0-9]*)\.(?P<lang>[a-z]{2})\.md")


class UnknownText(LookupError):
    """No consent text with that hash (or for that purpose and language)."""


@dataclass(frozen=True, slots=True)
class ConsentText:
    purpose: Purpose
    version: int
    language: str
    body: str = field(repr=False)
    #: hex SHA-256 of the UTF-8 bytes of ``body``: the text's identity
    sha256: str

    @property
    def title(self) -> str:
        """The first line, without its Markdown ``#``."""
        return self.body.splitlines()[0].lstrip("#").strip()

    @property
    def urn(self) -> str:
        """A URI naming this exact text (used as the FHIR Consent policy)."""
        return f"{TEXT_URN_PREFIX}{self.sha256}"


def text_from_bytes(purpose: Purpose, version: int, language: str, raw: bytes) -> ConsentText:
    """A consent text and its hash, from the file's bytes."""
    return ConsentText(purpose, version, language, raw.decode("utf-8"), sha256(raw).hexdigest())


class ConsentTexts:
    """A catalogue of consent texts, looked up by hash or by (purpose, language)."""

    def __init__(self, texts: list[ConsentText]) -> None:
        self._by_hash = {t.sha256: t for t in texts}
        if len(self._by_hash) != len(texts):
            raise ValueError("two consent texts have the same bytes")
        keys = {(t.purpose, t.version, t.language) for t in texts}
        if len(keys) != len(texts):
            raise ValueError("two consent texts share purpose, version and language")
        self._texts = sorted(texts, key=lambda t: (t.purpose, t.language, t.version))

    def __iter__(self) -> Iterator[ConsentText]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def by_hash(self, text_sha256: str) -> ConsentText:
        """The text whose SHA-256 is ``text_sha256``; :class:`UnknownText` otherwise."""
        try:
            return self._by_hash[text_sha256]
        except KeyError:
            raise UnknownText("no consent text with this hash") from None

    def current(self, purpose: Purpose, language: str) -> ConsentText:
        """The latest version of the text for ``purpose`` in ``language``."""
        versions = [t for t in self._texts if t.purpose == purpose and t.language == language]
        if not versions:
            raise UnknownText(f"no consent text for {purpose} in {language!r}")
        return max(versions, key=lambda t: t.version)

    def versions(self, purpose: Purpose) -> list[ConsentText]:
        """Every text of ``purpose``, all languages and versions."""
        return [t for t in self._texts if t.purpose == purpose]


def _load(folder: Traversable) -> ConsentTexts:
    texts = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match is None:
            continue
        purpose = Purpose(match["purpose"])
        if purpose not in CONSENTED_PURPOSES:
            raise ValueError(f"{entry.name}: {purpose} needs no consent text")
        if match["lang"] not in LANGUAGES:
            raise ValueError(f"{entry.name}: unsupported language")
        texts.append(
            text_from_bytes(purpose, int(match["version"]), match["lang"], entry.read_bytes())
        )
    return ConsentTexts(texts)


@cache
def default_texts() -> ConsentTexts:
    """The texts shipped in the package (read once: published texts never change)."""
    return _load(resources.files("secretum.consent").joinpath("texts"))
