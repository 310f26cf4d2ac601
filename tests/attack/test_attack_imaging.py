"""The attacker against the imaging archive (issue 10): with write access to the main database
or to the blob directory (not to the key vault or the KMS), or as a signed-in clinician probing
studies that are not theirs. Each attack is caught: a tampered byte, a swapped blob or sealed
value raises ``IntegrityError``; a study moved to another patient in the database, or a forged
patient-identifier row, is refused as tampering and raises a Security Alert; a study that
matched no patient opens for no clinician, not even under break-the-glass.
"""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, update

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    SENDER,
    SENDING,
    TR,
    ImagingWorld,
    imaging_world,
)
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, Tampered
from secretum.access.model import Purpose
from secretum.audit.model import EventType, Outcome
from secretum.crypto.errors import IntegrityError
from secretum.imaging.archive_model import InstanceStatus, StudyQuery
from secretum.imaging.tables import imaging_instances, imaging_patient_ids, imaging_studies


@pytest.fixture
def stored(iw: ImagingWorld) -> tuple[ImagingWorld, list]:  # type: ignore[type-arg]
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    iw.patient("pat-2")  # the radiologist cares for both
    slices = make_ct(2)
    assert all(r.ok for r in iw.archive.ingest(SENDING, map(to_bytes, slices)))
    return iw, slices


def test_a_tampered_blob_byte_is_caught(stored: tuple[ImagingWorld, list]) -> None:  # type: ignore[type-arg]
    iw, slices = stored
    study, sop = str(slices[0].StudyInstanceUID), str(slices[0].SOPInstanceUID)
    reader = iw.archive.open_study(READING, study)
    assert reader.read_frame(sop, 1) == slices[0].PixelData
    with iw.engine.connect() as conn:
        blob_name = conn.execute(select(imaging_instances.c.blob_name)).scalars().all()
    for path in iw.blobs():
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside the pixel data of a small, one-segment blob
        path.write_bytes(bytes(data))
    assert blob_name
    with pytest.raises(IntegrityError):
        reader.read_frame(sop, 1)
    with pytest.raises(IntegrityError):
        reader.instance_bytes(sop)


def test_swapped_blobs_or_sealed_values_do_not_open(stored: tuple[ImagingWorld, list]) -> None:  # type: ignore[type-arg]
    iw, slices = stored
    study = str(slices[0].StudyInstanceUID)
    t = imaging_instances.c
    with iw.engine.begin() as conn:
        rows = conn.execute(select(t.instance_key, t.blob_name, t.meta)).all()
        (k1, b1, _), (k2, b2, m2) = rows
        conn.execute(update(imaging_instances).where(t.instance_key == k1).values(blob_name=b2))
        conn.execute(update(imaging_instances).where(t.instance_key == k2).values(blob_name=b1))
    reader = iw.archive.open_study(READING, study)
    for ds in slices:
        with pytest.raises(IntegrityError):  # the blob's AD names its own SOP Instance UID
            reader.instance_bytes(str(ds.SOPInstanceUID))
    with iw.engine.begin() as conn:
        conn.execute(update(imaging_instances).where(t.instance_key == k1).values(meta=m2))
    with pytest.raises(IntegrityError):  # sealed metadata bound to its instance
        iw.archive.series_metadata(READING, study)


def test_a_study_moved_to_another_patient_is_refused_as_tampering(
    stored: tuple[ImagingWorld, list],  # type: ignore[type-arg]
) -> None:
    iw, slices = stored
    study = str(slices[0].StudyInstanceUID)
    with iw.engine.begin() as conn:
        conn.execute(update(imaging_studies).values(patient_id="pat-2"))
    with pytest.raises(Tampered):
        iw.archive.open_study(READING, study)
    with pytest.raises(Tampered):
        iw.archive.search_studies(READING, patient_id="pat-2")
    alerts = [
        r for r in iw.audit_rows(RADIOLOGIST.user_id) if r["event_type"] == EventType.SECURITY_ALERT
    ]
    assert len(alerts) == 2 and all(a["outcome"] == Outcome.MAJOR_FAILURE for a in alerts)


def test_a_forged_patient_identifier_routes_nothing(iw: ImagingWorld) -> None:
    """Write access to the database: map a DICOM patient id to pat-1 so that images of someone
    else land in (and expose them to) pat-1's record. The row has no valid tag."""
    iw.patient("pat-1")
    blind = iw.archive.store.patient_id_index("HOPITAL-NORD", "SYN0001")
    with iw.engine.begin() as conn:
        conn.execute(
            insert(imaging_patient_ids).values(
                blind_value=blind, patient_id="pat-1", created_at=NOW
            )
        )
    [result] = iw.archive.ingest(SENDING, [to_bytes(make_ct(1)[0])])
    assert result.status is InstanceStatus.FAILED and iw.blobs() == []
    assert iw.count("imaging_instances") == 0
    [alert] = [
        r for r in iw.audit_rows(SENDER.user_id) if r["event_type"] == EventType.SECURITY_ALERT
    ]
    assert alert["outcome"] == Outcome.MAJOR_FAILURE


def test_an_unmatched_study_opens_for_no_clinician_even_in_an_emergency(iw: ImagingWorld) -> None:
    iw.patient("pat-1")
    slices = make_ct(1, patient_id="NOBODY")
    assert iw.archive.ingest(SENDING, [to_bytes(slices[0])])[0].ok
    study = str(slices[0].StudyInstanceUID)
    for purpose in (TR, Purpose.EMERGENCY):
        with pytest.raises(AccessDenied) as refused:
            iw.archive.open_study(RequestContext(RADIOLOGIST, purpose, NOW), study)
        assert refused.value.decision.reason == "deny.health-data-without-patient"
    # "no such study" and "not yours" end alike for a UID probe
    for uid in (study, "1.2.3.4.5"):
        with pytest.raises(AccessDenied):
            iw.archive.search_studies(READING, query=StudyQuery(study_uid=uid))


def test_a_stolen_database_and_blob_directory_hold_no_identity(
    stored: tuple[ImagingWorld, list],  # type: ignore[type-arg]
) -> None:
    iw, slices = stored
    stolen = iw.database_bytes()
    ds = slices[0]
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    names = (ds.PatientID, ds.AccessionNumber, "Martin", "Hopital Nord", "19700101", ds.StudyDate)
    for value in (*uids, *names):
        assert str(value).encode() not in stolen
        for blob in iw.blobs():
            assert str(value).encode() not in blob.read_bytes()
