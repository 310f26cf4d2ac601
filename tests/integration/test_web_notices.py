"""The "Important information" box on the patient's record shows every notice it lists.

It listed the ten newest notices of the account but rendered only the kinds of the care pages:
a sign-in from a new device (written by the identity context) left an empty box.
"""

from __future__ import annotations

import re
from pathlib import Path

from secretum.notices.store import NoticeKind, notify
from web_world import build_world


def _box(html: str) -> str:
    found = re.search(r'<section aria-labelledby="notices-h">(.*?)</section>', html, re.S)
    assert found, "no notice box"
    return found.group(1)


def test_every_kind_of_notice_is_written_out(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    patient = world.users["own"]
    with world.platform.engine.begin() as conn:
        for kind in (NoticeKind.NEW_DEVICE_SIGN_IN, NoticeKind.ACCOUNT_LOCKED):
            notify(conn, patient.user_id, kind, world.clock.now)
    client = world.client("own", html=True)
    client.cookies.set("lang", "en")
    box = _box(client.get("/me/record").text)
    assert box.count('<p class="warning">') == 2
    assert "Sign-in from a new device" in box
    assert "temporarily locked" in box
    assert 'href="/account/security"' in box
