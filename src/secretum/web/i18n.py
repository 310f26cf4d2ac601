"""French and English for the pages: one catalogue per language, French first.

The language is chosen by the ``lang`` cookie, else the browser's Accept-Language, else French.
Missing keys fall back to French, then to the key itself (visible in tests, never a crash).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LANGUAGES = ("fr", "en")
DEFAULT = "fr"
_DIR = Path(__file__).parent / "locales"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """``locales/<lang>.json`` merged with every ``locales/<area>.<lang>.json``."""
    merged: dict[str, str] = {}
    for path in sorted(_DIR.glob(f"*{lang}.json")):
        if path.name == f"{lang}.json" or path.name.endswith(f".{lang}.json"):
            merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


def choose(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


def translate(lang: str, key: str, **params: object) -> str:
    text = catalogue(lang).get(key) or catalogue(DEFAULT).get(key) or key
    return text.format(**params) if params else text
