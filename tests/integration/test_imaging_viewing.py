"""Viewing sessions over the imaging archive (SQLite and PostgreSQL, the real policy): one audit
entry per opening, frames under the ticket without more, and every way a ticket must fail."""

from __future__ import annotations

import os
from datetime import timedelta

import pydicom
import pytest
from sqlalchemy import select

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    SENDING,
    STRANGER,
    TR,
    ImagingWorld,
    imaging_world,
)
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.audit.model import Outcome
from secretum.imaging.archive_model import InstanceStatus, StudyNotFound
from secretum.imaging.render import Format, render
from secretum.imaging.viewing import TICKET_REFUSED, ImagingViewer, Tickets
from secretum.policy import care

SESSION = "session-of-the-radiologist"


@pytest.fixture
def viewer(iw: ImagingWorld) -> ImagingViewer:
    key = os.urandom(32)
    return ImagingViewer(iw.archive, lambda: key)


def _study(iw: ImagingWorld, n: int = 4) -> list[pydicom.Dataset]:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    slices = make_ct(n)
    for i, ds in enumerate(slices):  # stored in reverse slice order: the viewer sorts them
        ds.ImagePositionPatient = [0, 0, float(10 - 2 * i)]
    results = iw.archive.ingest(SENDING, (to_bytes(ds) for ds in slices))
    assert all(r.status is InstanceStatus.STORED for r in results)
    return slices


def _entries(iw: ImagingWorld, actor: str) -> list[dict[str, object]]:
    return [r for r in iw.audit_rows(actor) if r["event_type"] == "110103"]


def test_one_audit_entry_for_a_whole_viewing(iw: ImagingWorld, viewer: ImagingViewer) -> None:
    slices = _study(iw)
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    viewing = viewer.open(READING, study, series, binding=SESSION, patient_id="pat-1")
    [s] = viewing.series
    assert viewing.patient_name == "Martin^Sophie" and viewing.study_date == "20261129"
    assert s.description == "AXIAL 1mm" and s.modality == "CT"
    positions = [f.position for f in s.frames]
    assert positions == sorted(positions) == [4.0, 6.0, 8.0, 10.0]
    assert s.frames[0].sop_uid == str(slices[-1].SOPInstanceUID)  # the lowest slice first
    assert len(_entries(iw, RADIOLOGIST.user_id)) == 1
    for f in s.frames:
        source = viewer.frame(READING, viewing.ticket, SESSION, f.sop_uid, f.number)
        assert source.module.rows == 8 and source.module.rescale_intercept == -1024
        assert render(source.pixels, source.module, Format.PNG).startswith(b"\x89PNG")
    thumb = viewer.series_thumbnail(READING, viewing.ticket, SESSION, series)
    assert thumb.module.columns == 8
    entries = _entries(iw, RADIOLOGIST.user_id)
    assert len(entries) == 1 and entries[0]["patient_id"] == "pat-1"
    assert entries[0]["outcome"] == Outcome.SUCCESS


def test_a_stranger_cannot_open_and_unknown_looks_alike(
    iw: ImagingWorld, viewer: ImagingViewer
) -> None:
    slices = _study(iw)
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    stranger = RequestContext(STRANGER, TR, NOW)
    with pytest.raises(AccessDenied):
        viewer.open(stranger, study, series, binding=SESSION)
    with pytest.raises(StudyNotFound):
        viewer.open(stranger, "1.2.3.4.5.6", None, binding=SESSION)
    refused = _entries(iw, STRANGER.user_id)
    assert refused[0]["outcome"] == Outcome.MINOR_FAILURE


def _refused_ticket(iw: ImagingWorld, actor: str) -> bool:
    rows = _entries(iw, actor)
    return bool(rows) and rows[-1]["outcome_desc"] == TICKET_REFUSED


def test_tickets_bound_to_actor_session_and_time(iw: ImagingWorld, viewer: ImagingViewer) -> None:
    slices = _study(iw)
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    viewing = viewer.open(READING, study, series, binding=SESSION)
    sop = viewing.series[0].frames[0].sop_uid
    # another actor with the very ticket (even one allowed to read the study elsewhere)
    with pytest.raises(AccessDenied):
        viewer.frame(RequestContext(STRANGER, TR, NOW), viewing.ticket, SESSION, sop, 1)
    assert _refused_ticket(iw, STRANGER.user_id)
    # the same actor, another session
    with pytest.raises(AccessDenied):
        viewer.frame(READING, viewing.ticket, "another-session", sop, 1)
    assert _refused_ticket(iw, RADIOLOGIST.user_id)
    # expired
    late = READING.at(NOW + viewer.lifetime + timedelta(seconds=1))
    with pytest.raises(AccessDenied):
        viewer.frame(late, viewing.ticket, SESSION, sop, 1)
    # a flipped byte, a ticket of another key
    raw = viewing.ticket
    flipped = raw[:20] + ("A" if raw[20] != "A" else "B") + raw[21:]
    with pytest.raises(AccessDenied):
        viewer.frame(READING, flipped, SESSION, sop, 1)
    other = ImagingViewer(iw.archive, lambda: os.urandom(32))
    with pytest.raises(AccessDenied):
        other.frame(READING, viewing.ticket, SESSION, sop, 1)
    # still good for its owner
    assert viewer.frame(READING, viewing.ticket, SESSION, sop, 1).pixels


def test_a_series_ticket_reads_nothing_else(iw: ImagingWorld, viewer: ImagingViewer) -> None:
    slices = _study(iw)
    other = make_ct(2, study_uid=str(slices[0].StudyInstanceUID))  # a second series
    iw.archive.ingest(SENDING, (to_bytes(ds) for ds in other))
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    viewing = viewer.open(READING, study, series, binding=SESSION)
    with pytest.raises(StudyNotFound):
        viewer.frame(READING, viewing.ticket, SESSION, str(other[0].SOPInstanceUID), 1)
    with pytest.raises(StudyNotFound):
        viewer.series_thumbnail(READING, viewing.ticket, SESSION, str(other[0].SeriesInstanceUID))
    with pytest.raises(StudyNotFound):
        viewer.frame(READING, viewing.ticket, SESSION, str(slices[0].SOPInstanceUID), 2)
    # a study ticket shows both series' thumbnails
    whole = viewer.open(READING, study, None, binding=SESSION)
    assert len(whole.series) == 2
    viewer.series_thumbnail(READING, whole.ticket, SESSION, str(other[0].SeriesInstanceUID))


def test_policy_asked_again_on_every_frame(iw: ImagingWorld, viewer: ImagingViewer) -> None:
    slices = _study(iw)
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    viewing = viewer.open(READING, study, series, binding=SESSION)
    sop = viewing.series[0].frames[0].sop_uid
    viewer.frame(READING, viewing.ticket, SESSION, sop, 1)
    with iw.engine.begin() as conn:  # the referral ends in the middle of the viewing
        c = care.care_relationships.c
        rel = conn.execute(
            select(c.relationship_id).where(c.practitioner_id == RADIOLOGIST.user_id)
        ).scalar_one()
        assert care.end(conn, rel, NOW)
    before = len(_entries(iw, RADIOLOGIST.user_id))
    with pytest.raises(AccessDenied):
        viewer.frame(READING.at(NOW + timedelta(seconds=1)), viewing.ticket, SESSION, sop, 1)
    entries = _entries(iw, RADIOLOGIST.user_id)
    assert len(entries) == before + 1 and entries[-1]["outcome"] == Outcome.MINOR_FAILURE


def test_tickets_are_opaque() -> None:
    key = os.urandom(32)
    tickets = Tickets(lambda: key)
    from secretum.access.model import Purpose
    from secretum.imaging.viewing import Claims

    claims = Claims("rad-1", "b" * 32, "1.2.826.0.1.3680043.99", "1.2.3", Purpose.TELERADIOLOGY, 10)
    sealed = tickets.seal(claims)
    assert "1.2.826" not in sealed and "rad-1" not in sealed
    assert sealed != tickets.seal(claims)  # fresh nonce
    from datetime import UTC, datetime

    assert tickets.open(sealed, datetime.fromtimestamp(5, UTC)) == claims
    assert tickets.open(sealed, datetime.fromtimestamp(10, UTC)) is None
    assert tickets.open("", datetime.fromtimestamp(5, UTC)) is None
    assert tickets.open("%%%", datetime.fromtimestamp(5, UTC)) is None
