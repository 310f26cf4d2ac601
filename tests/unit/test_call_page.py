"""The call page's template: every string it uses exists in French and in English, the strings
handed to its script are complete, and its test hooks are off unless the server is in test
mode (``SECRETUM_CALL_TEST_HOOKS``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from secretum.config import Settings
from secretum.web import i18n
from secretum.web.templating import _env

STATIC = Path(i18n.__file__).parent / "static"


def _render(lang: str, role: str, **extra: Any) -> str:
    settings = extra.pop("settings", Settings())
    request = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(settings=settings)),
        url=SimpleNamespace(path="/consult/abc"),
    )
    start = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    return _env.get_template("consult_call.html").render(
        request=request,
        lang=lang,
        t=lambda key, **params: i18n.translate(lang, key, **params),
        csrf_token="x",
        actor=None,
        static=lambda path: f"/static/{path}",
        when=lambda value: value.strftime("%d/%m/%Y %H:%M"),
        zone_label="Paris",
        public_url="https://localhost",
        appointment_id="abc",
        role=role,
        ws_url="wss://localhost/consult/abc/ws",
        other_name="Dr <Martin>",
        slot_start=start,
        slot_end=start + timedelta(minutes=30),
        waiting_room_minutes=10,
        window_open=True,
        **extra,
    )


def _keys_used() -> set[str]:
    text = (Path(i18n.__file__).parent / "templates" / "consult_call.html").read_text()
    return set(re.findall(r"""t\(["'](call\.[a-z_.]+)["']""", text))


@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize("role", ["patient", "practitioner"])
def test_every_string_exists_in_both_languages(lang: str, role: str) -> None:
    catalogue = i18n.catalogue(lang)
    assert _keys_used() - set(catalogue) == set()
    page = _render(lang, role)
    assert not re.search(r">\s*call\.[a-z_]+", page)  # no key shown as itself
    strings = json.loads(re.search(r'id="call-strings">(.*?)</script>', page, re.S)[1])  # type: ignore[index]
    # Every S.<name> the script reads is handed over, translated.
    script = (STATIC / "call.js").read_text()
    wanted = set(re.findall(r"\bS\.([a-z0-9_]+)", script))
    wanted |= {f"ended_{r}" for r in ("hung-up", "consent-withdrawn", "time-over", "policy")}
    assert wanted - set(strings) == set()
    assert all(v and not v.startswith("call.") for v in strings.values())
    assert "Dr &lt;Martin&gt;" in page  # names escaped
    assert ("lobby-list" in page) == (role == "practitioner")


def test_test_hooks_only_in_test_mode() -> None:
    assert 'data-test-hooks="0"' in _render("fr", "patient")
    assert 'data-test-hooks="1"' in _render(
        "fr", "patient", settings=Settings(call_test_hooks=True)
    )


def test_the_code_words_translate_each_other() -> None:
    text = (STATIC / "call-words.js").read_text()
    lists = {
        lang: re.findall(
            r'"([^"]+)"', re.search(lang + r": Object.freeze\(\[(.*?)\]\)", text, re.S)[1]
        )  # type: ignore[index]
        for lang in ("en", "fr")
    }
    for words in lists.values():
        assert len(words) == 100 and len(set(words)) == 100
