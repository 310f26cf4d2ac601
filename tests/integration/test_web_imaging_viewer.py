"""The imaging pages over the real app (no browser): what they show in French and English, and
that a whole viewing (series list, thumbnails, the stack, a hundred frames) is one line per
opening in the audit and in the patient's "who opened my record"."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select

from imaging_web_world import imaging_clinic
from secretum.audit.store import audit_entries
from web_world import WebWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return imaging_clinic(tmp_path_factory.mktemp("viewer-pages"))


def _urls(world: WebWorld, name: str = "nocare") -> tuple[str, str, str]:
    pid = world.users[name].user_id
    studies = f"/practice/patients/{pid}/imaging"
    study = f"{studies}/studies/{world.ids['study:' + name]}"
    return studies, study, f"{study}/series/{world.ids['series:' + name]}"


def _count(world: WebWorld, **where: Any) -> int:
    with world.platform.engine.connect() as conn:
        query = select(func.count()).select_from(audit_entries)
        for column, value in where.items():
            query = query.where(getattr(audit_entries.c, column) == value)
        return int(conn.execute(query).scalar_one())


def test_the_record_page_links_to_imaging(world: WebWorld) -> None:
    pid = world.users["nocare"].user_id
    page = world.client("radio", html=True).get(f"/practice/patients/{pid}")
    assert f'href="/practice/patients/{pid}/imaging?purpose=teleradiology"' in page.text
    assert "Examens d'imagerie" in unescape(page.text)


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("fr", ["Poumon", "Os", "Tissus mous", "Cerveau", "Position de coupe", "29/11/2026"]),
        ("en", ["Lung", "Bone", "Soft tissue", "Brain", "Slice position", "2026-11-29"]),
    ],
)
def test_pages_in_both_languages(world: WebWorld, lang: str, words: list[str]) -> None:
    client = world.client("radio", html=True)
    client.headers["accept-language"] = lang
    studies, study, series = _urls(world)
    listing = unescape(client.get(studies).text)
    assert "CT THORAX" in listing and ("29/11/2026" in listing or "2026-11-29" in listing)
    series_page = unescape(client.get(study).text)
    assert "AXIAL 5mm" in series_page and "/thumbnail" in series_page
    viewer = client.get(series)
    assert viewer.status_code == 200
    text = unescape(viewer.text)
    assert f'<html lang="{lang}">' in text
    for word in words:
        assert word in text, word
    assert "Synthetic Test" in text  # the DICOM patient name, given name first
    assert 'src="/static/viewer.js"' in text and 'type="module"' in text
    frames = re.search(r"data-frames='([^']+)'", viewer.text)
    assert frames and frames.group(1).count("[") == 13  # twelve frames, in slice order
    assert "<script>" not in viewer.text  # strict CSP: no inline script


def test_one_line_per_opening_however_many_frames(world: WebWorld) -> None:
    client = world.client("radio", html=True)
    pid = world.users["nocare"].user_id
    _, study, series = _urls(world)
    before = _count(world, patient_id=pid, event_type="110103")
    page = client.get(study).text
    for thumb in re.findall(r'src="(/practice/imaging/view/[^"]+/thumbnail)"', page):
        assert client.get(thumb).headers["content-type"] == "image/jpeg"
    viewer = client.get(series).text
    base = re.search(r'data-base="([^"]+)"', viewer)
    assert base
    sops = world.ids["sops:nocare"]
    for round_ in range(8):
        for sop in sops:
            window = f"{40 + round_},{400 + 10 * round_}"
            r = client.get(f"{base.group(1)}{sop}/1", params={"window": window})
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    assert _count(world, patient_id=pid, event_type="110103") == before + 2
    # the patient's "who opened my record": the radiologist's images, not ninety-six lines
    log = world.client("nocare", html=True)
    log.headers["accept-language"] = "en"
    text = unescape(log.get("/me/access-log").text)
    viewed = re.search(r"Dr Rachel Radiologue \(radiology\) viewed your record (\d+) times", text)
    assert viewed and int(viewed.group(1)) == _count(
        world, patient_id=pid, event_type="110103", actor_id=world.users["radio"].user_id
    )


def test_bad_window_on_a_frame_is_400_and_patient_page_refused(world: WebWorld) -> None:
    client = world.client("radio", html=True)
    _, _, series = _urls(world)
    base = re.search(r'data-base="([^"]+)"', client.get(series).text)
    assert base
    url = f"{base.group(1)}{world.ids['sops:nocare'][0]}/1"
    assert client.get(url, params={"window": "1,0"}).status_code == 400
    assert client.get(url.replace("/1", "/2")).status_code == 404  # no frame 2
    assert world.client("nocare", html=True).get(series).status_code == 403  # not a practitioner
