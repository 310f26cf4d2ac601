"""Consent texts: shipped for every consented purpose in French and English, named by hash."""

from __future__ import annotations

from hashlib import sha256
from importlib import resources

import pytest

from secretum.access.model import CONSENTED_PURPOSES, Purpose
from secretum.consent.texts import (
    LANGUAGES,
    ConsentTexts,
    UnknownText,
    default_texts,
    text_from_bytes,
)

TEXTS = default_texts()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("purpose", sorted(CONSENTED_PURPOSES))
def test_every_purpose_has_a_text_in_every_language(purpose: Purpose, language: str) -> None:
    text = TEXTS.current(purpose, language)
    assert text.purpose is purpose and text.language == language and text.version >= 1
    assert text.body.startswith("# ") and 10 < len(text.title) < 80
    assert 400 < len(text.body) < 2500  # short, but says what it must
    words = text.body.lower()
    # the patient learns they may refuse and withdraw at any time
    if language == "fr":
        assert "retirer ce consentement à tout moment" in words and "refuser" in words
    else:
        assert "withdraw this consent at any time" in words and "refuse" in words


def test_a_text_is_named_by_the_sha256_of_its_file() -> None:
    folder = resources.files("secretum.consent").joinpath("texts")
    raw = folder.joinpath("teleconsultation.v1.fr.md").read_bytes()
    text = TEXTS.by_hash(sha256(raw).hexdigest())
    assert (text.purpose, text.version, text.language) == (Purpose.TELECONSULTATION, 1, "fr")
    assert text.urn == f"urn:secretum:consent-text:sha256:{sha256(raw).hexdigest()}"
    assert len(TEXTS) == len(CONSENTED_PURPOSES) * len(LANGUAGES)


def test_any_change_is_another_text() -> None:
    text = TEXTS.current(Purpose.RESEARCH, "en")
    edited = text_from_bytes(text.purpose, 2, "en", text.body.replace(".", ",", 1).encode())
    assert edited.sha256 != text.sha256
    with pytest.raises(UnknownText):
        TEXTS.by_hash(edited.sha256)
    catalogue = ConsentTexts([*TEXTS, edited])
    assert catalogue.current(Purpose.RESEARCH, "en") is edited  # the newest version
    assert catalogue.by_hash(text.sha256) is text  # the old one stays known


def test_the_catalogue_refuses_ambiguity() -> None:
    text = TEXTS.current(Purpose.SHARING, "fr")
    with pytest.raises(ValueError, match="same bytes"):
        ConsentTexts([text, text])
    twin = text_from_bytes(text.purpose, text.version, "fr", b"# other\n")
    with pytest.raises(ValueError, match="share"):
        ConsentTexts([text, twin])


def test_no_text_for_purposes_without_consent() -> None:
    with pytest.raises(UnknownText):
        TEXTS.current(Purpose.PATIENT_REQUEST, "fr")
    with pytest.raises(UnknownText):
        TEXTS.current(Purpose.TELECONSULTATION, "de")
