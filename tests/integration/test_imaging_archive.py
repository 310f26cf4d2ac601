"""The imaging archive end to end (SQLite and PostgreSQL), with the real policy: ingest ->
search -> read instance / frame / metadata, reconciliation, refusals and their audit, resends,
shredding and erasure."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pydicom
import pytest

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    RECONCILING,
    SENDER,
    SENDING,
    STRANGER,
    TR,
    VIGIL,
    ImagingWorld,
    imaging_world,
)
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, RecordErased
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.model import Outcome
from secretum.crypto.streaming_format import DEFAULT_SEGMENT_SIZE, Layout, SegmentCipher
from secretum.imaging.archive import ORPHAN_GRACE
from secretum.imaging.archive_model import InstanceStatus, StudyNotFound, StudyQuery
from secretum.rights.access_log import read_access_entries


def segment_of(offset: int) -> int:
    return Layout(DEFAULT_SEGMENT_SIZE).segment_of(offset)


def _ingest_ct(iw: ImagingWorld, n: int = 3, **kwargs: object) -> list[pydicom.Dataset]:
    slices = make_ct(n, **kwargs)  # type: ignore[arg-type]
    results = iw.archive.ingest(SENDING, (to_bytes(ds) for ds in slices))
    assert [r.status for r in results] == [InstanceStatus.STORED] * n
    return slices


@pytest.fixture
def matched(iw: ImagingWorld) -> ImagingWorld:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    return iw


def test_ingest_search_read_instance_and_frame(matched: ImagingWorld) -> None:
    iw = matched
    slices = _ingest_ct(iw)
    study_uid = str(slices[0].StudyInstanceUID)
    [study] = iw.archive.search_studies(READING, patient_id="pat-1")
    assert study.study_uid == study_uid and study.patient_id == "pat-1"
    assert study.modalities == ("CT",) and (study.series_count, study.instance_count) == (1, 3)
    assert study.attributes["00100010"]["Value"][0]["Alphabetic"] == "Martin^Sophie"
    by_uid = iw.archive.search_studies(READING, query=StudyQuery(study_uid=study_uid))
    assert [s.study_uid for s in by_uid] == [study_uid]
    in_range = StudyQuery(date_from="20261101", date_to="20261130", modality="CT")
    assert len(iw.archive.search_studies(READING, patient_id="pat-1", query=in_range)) == 1
    out_of_range = StudyQuery(date_from="20261201")
    assert iw.archive.search_studies(READING, patient_id="pat-1", query=out_of_range) == []

    [series] = iw.archive.search_series(READING, study_uid)
    assert series.series_uid == str(slices[0].SeriesInstanceUID) and series.instance_count == 3
    instances = iw.archive.search_instances(READING, study_uid, series.series_uid)
    assert [i.instance_number for i in instances] == [1, 2, 3]

    reader = iw.archive.open_series(READING, study_uid, series.series_uid)
    for ds in slices:
        sop = str(ds.SOPInstanceUID)
        assert reader.instance_bytes(sop) == to_bytes(ds)  # identical to what was sent
        assert reader.read_frame(sop, 1) == ds.PixelData
        with pytest.raises(StudyNotFound):
            reader.read_frame(sop, 2)

    meta = iw.archive.series_metadata(READING, study_uid, series.series_uid,
        bulk_uri=lambda st, se, sop, tag: f"/studies/{st}/series/{se}/instances/{sop}/bulk/{tag}",
    )  # fmt: skip
    assert len(meta) == 3
    first = pydicom.Dataset.from_json(meta[0], bulk_data_uri_handler=lambda *a: b"")
    assert first.SOPInstanceUID == slices[0].SOPInstanceUID
    assert meta[0]["7FE00010"]["BulkDataURI"].endswith("/bulk/7FE00010")

    stolen = iw.database_bytes()
    for secret in (b"Martin", b"SYN0001", b"ACC1", b"THORAX", study_uid.encode(),
                   str(slices[0].SOPInstanceUID).encode(), b"19700101"):  # fmt: skip
        assert secret not in stolen
    for blob in iw.blobs():
        assert b"Martin" not in blob.read_bytes()


def test_a_frame_read_decrypts_only_its_segments(
    matched: ImagingWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    iw = matched
    ds = make_ct(1)[0]
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = 8  # 8 x 512 KiB: 4 MiB, 5 segments of 1 MiB
    frames = [bytes([i]) * (512 * 512 * 2) for i in range(8)]
    ds.PixelData = b"".join(frames)
    [result] = iw.archive.ingest(SENDING, [to_bytes(ds)])
    assert result.status is InstanceStatus.STORED
    reader = iw.archive.open_study(READING, str(ds.StudyInstanceUID))
    [instance] = reader.instances
    assert instance.number_of_frames == 8 and instance.size > 4 * 1024 * 1024

    opened: list[int] = []
    real = SegmentCipher.open_into

    def spy(self: SegmentCipher, index: int, *args: object, **kw: object) -> int:
        opened.append(index)
        return real(self, index, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SegmentCipher, "open_into", spy)
    sop = str(ds.SOPInstanceUID)
    header = instance.size - len(ds.PixelData)  # pixel data is the last element
    for n in (1, 5, 8):
        opened.clear()
        assert reader.read_frame(sop, n) == frames[n - 1]
        # the last segment (which proves the size) and the one or two covering the frame
        start = header + (n - 1) * len(frames[0])
        covering = {segment_of(start), segment_of(start + len(frames[0]) - 1)}
        assert set(opened) == covering | {4} and len(opened) <= 3, opened
    opened.clear()
    reader.instance_bytes(sop)
    assert sorted(opened) == [0, 1, 2, 3, 4]  # the whole instance: every segment


def test_unmatched_study_waits_for_reconciliation(matched: ImagingWorld) -> None:
    iw = matched
    slices = _ingest_ct(iw, 2, patient_id="UNKNOWN-42", name="Inconnu^Jean")
    study_uid = str(slices[0].StudyInstanceUID)
    assert iw.count("imaging_studies") == 1
    # no clinician sees it, nor can open it by UID
    assert iw.archive.search_studies(READING, patient_id="pat-1") == []
    for actor in (RADIOLOGIST, SENDER, VIGIL):
        with pytest.raises(AccessDenied):
            iw.archive.open_study(RequestContext(actor, TR, NOW), study_uid)
        with pytest.raises(AccessDenied):
            iw.archive.search_studies(
                RequestContext(actor, TR, NOW), query=StudyQuery(study_uid=study_uid)
            )
    # only identity-vigilance staff list it
    with pytest.raises(AccessDenied):
        iw.archive.reconciliation_list(RequestContext(RADIOLOGIST, Purpose.OPERATIONS, NOW))
    [pending] = iw.archive.reconciliation_list(RECONCILING)
    assert pending.reason == "no-match" and pending.instance_count == 2
    assert pending.attributes["00100020"]["Value"] == ["UNKNOWN-42"]
    holding = f"imaging-holding-{pending.study_key}"
    blobs_before = iw.blobs()

    with pytest.raises(AccessDenied):  # a radiologist cannot link
        iw.archive.link_study(
            RequestContext(RADIOLOGIST, Purpose.OPERATIONS, NOW), pending.study_key, "pat-1"
        )
    iw.archive.link_study(RECONCILING, pending.study_key, "pat-1")

    assert iw.keyring.is_shredded(holding)
    assert set(iw.blobs()).isdisjoint(blobs_before) and len(iw.blobs()) == 2  # re-encrypted
    assert iw.archive.reconciliation_list(RECONCILING) == []
    [study] = iw.archive.search_studies(READING, patient_id="pat-1")
    assert study.study_uid == study_uid
    reader = iw.archive.open_study(READING, study_uid)
    for ds in slices:
        assert reader.instance_bytes(str(ds.SOPInstanceUID)) == to_bytes(ds)
    # the link is in the patient's access log
    with iw.engine.connect() as conn:
        log = read_access_entries(conn, "pat-1", limit=50).entries
    assert any(e.actor_id == VIGIL.user_id and e.action == "U" for e in log)
    # more instances of the study now go to the patient directly
    extra = make_ct(1, patient_id="UNKNOWN-42", study_uid=study_uid)
    assert iw.archive.ingest(SENDING, [to_bytes(extra[0])])[0].ok


def test_sender_outside_the_care_team_deposits_for_reconciliation(iw: ImagingWorld) -> None:
    """Refusing would tell the sender the patient is known here: the study waits instead."""
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    outsider = Actor("doc-out", Role.PRACTITIONER)
    slices = make_ct(1)
    [result] = iw.archive.ingest(RequestContext(outsider, TR, NOW), [to_bytes(slices[0])])
    assert result.status is InstanceStatus.STORED
    [pending] = iw.archive.reconciliation_list(RECONCILING)
    assert pending.reason == "sender"
    assert iw.archive.search_studies(READING, patient_id="pat-1") == []


def test_radiologist_without_consent_or_care_is_refused_and_audited_once(
    iw: ImagingWorld,
) -> None:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    iw.patient("pat-2", consent=False)
    first = _ingest_ct(iw, 1)
    study_uid = str(first[0].StudyInstanceUID)
    # no care relationship (no referral): refused, one audit entry
    with pytest.raises(AccessDenied) as no_care:
        iw.archive.open_study(RequestContext(STRANGER, TR, NOW), study_uid)
    assert no_care.value.decision.reason == "deny.not-in-care-team"
    [entry] = iw.audit_rows(STRANGER.user_id)
    assert entry["outcome"] == Outcome.MINOR_FAILURE and entry["patient_id"] == "pat-1"
    assert entry["event_type"] == "110103"
    # no teleradiology consent: the sender cannot store under the patient's key either; the
    # study waits for reconciliation
    second = make_ct(1, patient_id="SYN0002")
    assert iw.archive.ingest(SENDING, [to_bytes(second[0])])[0].ok
    [pending] = iw.archive.reconciliation_list(RECONCILING)
    iw.archive.link_study(RECONCILING, pending.study_key, "pat-2")
    before = len(iw.audit_rows(RADIOLOGIST.user_id))
    with pytest.raises(AccessDenied) as no_consent:
        iw.archive.open_study(READING, str(second[0].StudyInstanceUID))
    assert no_consent.value.decision.reason == "deny.no-consent"
    assert len(iw.audit_rows(RADIOLOGIST.user_id)) == before + 1


def test_one_audit_entry_per_series_read_even_with_frames(matched: ImagingWorld) -> None:
    iw = matched
    slices = _ingest_ct(iw, 4)
    before = len(iw.audit_rows(RADIOLOGIST.user_id))
    reader = iw.archive.open_series(
        READING,
        str(slices[0].StudyInstanceUID),
        str(slices[0].SeriesInstanceUID),
    )
    for ds in slices:
        reader.read_frame(str(ds.SOPInstanceUID), 1)
        reader.instance_bytes(str(ds.SOPInstanceUID))
    rows = iw.audit_rows(RADIOLOGIST.user_id)[before:]
    assert len(rows) == 1
    assert (rows[0]["event_type"], rows[0]["action"], rows[0]["outcome"]) == ("110103", "R", 0)
    assert rows[0]["patient_id"] == "pat-1" and rows[0]["resource_type"] == "ImagingStudy"
    with iw.engine.connect() as conn:
        log = read_access_entries(conn, "pat-1", limit=50).entries
    assert sum(e.actor_id == RADIOLOGIST.user_id for e in log) == 1
    # the ingest: one entry per study, not per instance
    sends = [r for r in iw.audit_rows(SENDER.user_id) if r["event_type"] == "110104"]
    assert len(sends) == 1 and sends[0]["action"] == "C"


def test_resend_identical_is_idempotent_and_other_content_conflicts(
    matched: ImagingWorld,
) -> None:
    iw = matched
    slices = _ingest_ct(iw, 2)
    blobs = iw.blobs()
    again = iw.archive.ingest(SENDING, [to_bytes(slices[0]), to_bytes(slices[1], implicit=True)])
    assert [r.status for r in again] == [InstanceStatus.DUPLICATE] * 2 and all(r.ok for r in again)
    changed = slices[0]
    changed.PixelData = bytes(len(changed.PixelData))
    [conflict] = iw.archive.ingest(SENDING, [to_bytes(changed)])
    assert conflict.status is InstanceStatus.CONFLICT and conflict.dicomweb_failure_reason == 0x0111
    # within one request too
    new = make_ct(1, patient_id="SYN0001")[0]
    other = pydicom.dcmread(io.BytesIO(to_bytes(new)))
    other.PatientComments = "changed"
    results = iw.archive.ingest(SENDING, [to_bytes(new), to_bytes(new), to_bytes(other)])
    assert [r.status for r in results] == [
        InstanceStatus.STORED, InstanceStatus.DUPLICATE, InstanceStatus.CONFLICT,
    ]  # fmt: skip
    assert len(iw.blobs()) == len(blobs) + 1 and iw.count("imaging_instances") == 3


def test_invalid_instances_fail_with_their_status_and_store_nothing(
    matched: ImagingWorld,
) -> None:
    iw = matched
    good = make_ct(1)[0]
    data = to_bytes(good)
    results = iw.archive.ingest(SENDING, [b"not dicom", data[:-40], data])
    assert [r.status for r in results] == [
        InstanceStatus.FAILED, InstanceStatus.FAILED, InstanceStatus.STORED,
    ]  # fmt: skip
    assert results[0].reason == "not_part10" and results[0].dicomweb_failure_reason == 0xC000
    assert iw.count("imaging_instances") == 1 and len(iw.blobs()) == 1


def test_shredding_makes_imaging_unreadable_and_erasure_removes_blobs(
    matched: ImagingWorld,
) -> None:
    iw = matched
    slices = _ingest_ct(iw, 2)
    study_uid = str(slices[0].StudyInstanceUID)
    reader = iw.archive.open_study(READING, study_uid)
    iw.keyring.shred("pat-1")
    with pytest.raises(RecordErased):
        iw.archive.open_study(READING, study_uid)
    with pytest.raises(RecordErased):
        iw.archive.search_studies(READING, patient_id="pat-1")
    from secretum.crypto.errors import KeyShreddedError

    with pytest.raises(KeyShreddedError):  # even a reader opened before
        reader.instance_bytes(str(slices[0].SOPInstanceUID))
    assert len(iw.blobs()) == 2
    assert iw.archive.erase_patient("pat-1") == 2
    assert iw.blobs() == [] and iw.count("imaging_instances") == 0
    assert iw.count("imaging_studies") == 0 and iw.count("imaging_patient_ids") == 0


def test_restricted_study_needs_the_patients_naming(matched: ImagingWorld) -> None:
    from secretum.access.model import Sensitivity

    iw = matched
    ds = make_ct(1)[0]
    results = iw.archive.ingest(SENDING, [to_bytes(ds)], sensitivity=Sensitivity.RESTRICTED)
    # the sender is not named for restricted data: the study waits for reconciliation
    assert results[0].ok
    assert iw.archive.search_studies(READING, patient_id="pat-1") == []
    with pytest.raises(AccessDenied):
        iw.archive.open_study(READING, str(ds.StudyInstanceUID))


def test_a_large_request_is_written_in_batches(matched: ImagingWorld) -> None:
    """Index rows are written per study and batch (one transaction, one audit entry each);
    a later batch of the same study finds it created by the first."""
    iw = matched
    iw.archive.batch_size = 2
    slices = make_ct(5)
    results = iw.archive.ingest(SENDING, (to_bytes(ds) for ds in slices))
    assert [r.status for r in results] == [InstanceStatus.STORED] * 5
    sends = [r for r in iw.audit_rows(SENDER.user_id) if r["event_type"] == "110104"]
    assert len(sends) == 3 and {r["patient_id"] for r in sends} == {"pat-1"}
    [study] = iw.archive.search_studies(READING, patient_id="pat-1")
    assert (study.series_count, study.instance_count) == (1, 5)


def test_a_carried_out_erasure_covers_imaging(matched: ImagingWorld) -> None:
    """The erasure job shreds the patient's key (imaging unreadable), then the archive's
    erasure hook removes the index rows and blobs."""
    from secretum.rights.erasure import Erasures
    from secretum.rights.ports import InMemoryRestrictionFlags

    iw = matched
    _ingest_ct(iw, 2)
    shredded: list[str] = []

    def shred(patient_id: str, *, actor_id: str, actor_role: str) -> None:
        iw.keyring.shred(patient_id)
        shredded.append(patient_id)

    erasures = Erasures(
        iw.records, InMemoryRestrictionFlags(), shred, retention_years=0,
        also_erase=[iw.archive.erase_patient],
    )  # fmt: skip
    patient = Actor("pat-1", Role.PATIENT, strong_auth_at=NOW)
    outcome = erasures.request_erasure(
        RequestContext(patient, Purpose.PATIENT_REQUEST, NOW), "pat-1"
    )
    assert outcome.shredded and shredded == ["pat-1"]
    assert iw.blobs() == [] and iw.count("imaging_instances") == 0


def test_orphan_blobs_of_an_interrupted_ingest_are_removed_after_their_grace(
    matched: ImagingWorld,
) -> None:
    """A blob no instance row names (an ingest cut between its blob writes and its commit) is
    removed once older than the grace period; the blobs of stored instances are kept."""
    iw = matched
    _ingest_ct(iw, 2)
    kept = set(iw.blobs())
    orphan = iw.archive.store.blobs.new_name()
    with iw.archive.store.blobs.writer(orphan) as out:
        out.write(b"ciphertext of an ingest that never committed")
    assert iw.archive.remove_orphans(NOW) == 0  # too young: may belong to a running ingest
    later = datetime.now(UTC) + ORPHAN_GRACE + timedelta(minutes=1)
    assert iw.archive.remove_orphans(later) == 1
    assert set(iw.blobs()) == kept
