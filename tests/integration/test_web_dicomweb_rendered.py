"""WADO-RS rendered and thumbnail over the real app: who gets images, who does not, the audit."""

from __future__ import annotations

import io
from email import message_from_bytes
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from imaging_web_world import imaging_clinic
from secretum.audit.model import Outcome
from secretum.audit.store import audit_entries
from web_world import WebWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return imaging_clinic(tmp_path_factory.mktemp("rendered"))


def _base(world: WebWorld, name: str) -> str:
    return f"/dicomweb/studies/{world.ids['study:' + name]}/series/{world.ids['series:' + name]}"


def _entries(world: WebWorld, user: str) -> list[dict[str, Any]]:
    uid = world.users[user].user_id
    with world.platform.engine.connect() as conn:
        rows = conn.execute(
            select(audit_entries)
            .where(audit_entries.c.actor_id == uid, audit_entries.c.event_type == "110103")
            .order_by(audit_entries.c.seq)
        )
        return [dict(r._mapping) for r in rows]


def _parts(body: bytes, content_type: str) -> list[bytes]:
    msg = message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    return [part.get_payload(decode=True) for part in msg.get_payload()]  # type: ignore[misc,union-attr]


def test_radiologist_gets_png_and_jpeg_one_audit_entry_per_request(world: WebWorld) -> None:
    client = world.client("radio")
    sop = world.ids["sops:nocare"][3]
    before = len(_entries(world, "radio"))
    r = client.get(
        f"{_base(world, 'nocare')}/instances/{sop}/rendered", headers={"accept": "image/png"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (128, 128) and image.mode == "L"
    r = client.get(
        f"{_base(world, 'nocare')}/instances/{sop}/frames/1/rendered",
        headers={"accept": "image/jpeg"},
        params={"window": "-600,1500", "viewport": "64,64"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    assert "no-store" in r.headers["cache-control"]
    # a whole series: multipart/related, one part per frame, ONE audit entry
    r = client.get(f"{_base(world, 'nocare')}/rendered", params={"accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")
    parts = _parts(r.content, r.headers["content-type"])
    assert len(parts) == 12 and all(p.startswith(b"\x89PNG") for p in parts)
    assert len(_entries(world, "radio")) == before + 3
    # thumbnails: small JPEG by default
    for path in (
        f"/dicomweb/studies/{world.ids['study:nocare']}/thumbnail",
        f"{_base(world, 'nocare')}/thumbnail",
        f"{_base(world, 'nocare')}/instances/{sop}/thumbnail",
        f"{_base(world, 'nocare')}/instances/{sop}/frames/1/thumbnail",
    ):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", path
        assert max(Image.open(io.BytesIO(r.content)).size) <= 128
    entries = _entries(world, "radio")
    assert len(entries) == before + 7
    assert {e["patient_id"] for e in entries[before:]} == {world.users["nocare"].user_id}
    assert all(e["outcome"] == Outcome.SUCCESS for e in entries[before:])


def test_windows_change_the_rendering(world: WebWorld) -> None:
    client = world.client("radio")
    url = f"{_base(world, 'nocare')}/instances/{world.ids['sops:nocare'][5]}/frames/1/rendered"
    lung = client.get(url, params={"window": "-600,1500"}).content
    bone = client.get(url, params={"window": "300,1500,LINEAR"}).content
    default = client.get(url).content
    soft = client.get(url, params={"window": "40,400"}).content
    assert len({lung, bone, soft}) == 3 and default == soft  # the stored window is soft tissue


@pytest.mark.parametrize(
    "params",
    [
        {"window": "40"},
        {"window": "a,b"},
        {"window": "40,0"},
        {"window": "40,400,cubic"},
        {"viewport": "0,10"},
        {"viewport": "1,2,3"},
        {"quality": "x"},
    ],
)
def test_bad_parameters_are_400(world: WebWorld, params: dict[str, str]) -> None:
    url = f"{_base(world, 'nocare')}/instances/{world.ids['sops:nocare'][0]}/rendered"
    r = world.client("radio").get(url, params=params)
    assert r.status_code == 400


def test_unacceptable_media_type_is_406(world: WebWorld) -> None:
    url = f"{_base(world, 'nocare')}/instances/{world.ids['sops:nocare'][0]}/rendered"
    r = world.client("radio").get(url, headers={"accept": "image/gif"})
    assert r.status_code == 406


@pytest.mark.parametrize("who", ["gp", "other", "dpo"])
def test_refused_look_like_unknown_and_are_audited(world: WebWorld, who: str) -> None:
    """gp: a practitioner outside nocare's care team; other: a patient of another; dpo."""
    client = world.client(who)
    before = len(_entries(world, who))
    forbidden = client.get(f"{_base(world, 'nocare')}/rendered")
    unknown = client.get("/dicomweb/studies/1.2.826.0.1.3680043.8.498.1/series/1.2.3/rendered")
    thumb = client.get(f"/dicomweb/studies/{world.ids['study:nocare']}/thumbnail")
    for r in (forbidden, unknown, thumb):
        assert r.status_code == 404 and r.json() == {"error": "not found"}
    assert not forbidden.headers["content-type"].startswith("image")
    entries = _entries(world, who)[before:]
    refused = [e for e in entries if e["outcome"] == Outcome.MINOR_FAILURE]
    assert len(refused) == 3
    assert sum(1 for e in refused if e["patient_id"] == world.users["nocare"].user_id) == 2


def test_the_patient_sees_their_own_images(world: WebWorld) -> None:
    r = world.client("nocare").get(f"{_base(world, 'nocare')}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_no_session_is_401(world: WebWorld) -> None:
    r = world.client().get(f"{_base(world, 'nocare')}/rendered")
    assert r.status_code == 401
    r = world.client().get(f"/dicomweb/studies/{world.ids['study:nocare']}/thumbnail")
    assert r.status_code == 401


def test_a_compressed_instance_is_406_not_a_crash(world: WebWorld, tmp_path: Path) -> None:
    """A JPEG Baseline instance the archive holds: stored and retrievable, not rendered."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from imaging_data import to_bytes
    from imaging_phantom import make_phantom
    from secretum.access.context import RequestContext
    from secretum.access.model import Purpose

    [ds] = make_phantom(1, 16, patient_id="DPI-nocare")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buf, "JPEG")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    radio = world.users["radio"]
    ctx = RequestContext(radio.actor, Purpose.TELERADIOLOGY, world.clock.now)
    [result] = world.services.imaging.ingest(ctx, [to_bytes(ds)])
    assert result.ok, result
    base = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    r = world.client("radio").get(f"{base}/instances/{ds.SOPInstanceUID}/rendered")
    assert r.status_code == 406 and r.json() == {
        "error": "compressed transfer syntax: rendering not supported"
    }
    assert world.client("radio").get(f"{base}/thumbnail").status_code == 406
    assert world.client("radio").get(f"{base}/rendered").status_code == 406  # before streaming


def test_a_frame_list_is_checked_before_streaming(world: WebWorld) -> None:
    sop = world.ids["sops:nocare"][0]
    url = f"{_base(world, 'nocare')}/instances/{sop}/frames/1,2/rendered"
    r = world.client("radio").get(url)
    assert r.status_code == 404 and r.json() == {"error": "not found"}
    r = world.client("radio").get(url.replace("1,2", "1,1"))
    assert r.status_code == 200 and len(_parts(r.content, r.headers["content-type"])) == 2
