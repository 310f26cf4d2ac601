"""Benchmark of the imaging viewer's frame path (:mod:`secretum.imaging.viewing`, ``render``).

A patient's CT series (512x512, 16-bit, 12 bits stored, noise like
/work/shared/dicom/make_ct.py) is ingested through the archive (encrypted, indexed, audited),
on SQLite, with the real policy. Figures (median of per-frame times, as frames/s):

* a frame under a viewing ticket (ticket opened, policy asked again silently, one row and its
  metadata unsealed, one ``decrypt_range``, rendered as PNG), against the same frame through
  an audited opening of the series per frame (``open_series`` + header + frame + PNG: what a
  viewer without tickets would cost, besides an audit line per frame): target ratio >= 1.0;
* the ticket's own cost: the frame under the ticket without rendering, against
  ``StudyReader.read_frame`` on a reader opened once (no policy, nothing to check): reported;
* rendering alone (modality LUT, window, PNG / JPEG encode of 512x512): reported.

``quick=True`` ingests 24 slices instead of 96. Run alone with
``.venv/bin/python -m bench.bench_viewer [--quick]``.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bench.common import Figure
from secretum.access.context import RequestContext
from secretum.access.guard import TableGuard, allow
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.bootstrap import bind_row_mac
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import default_texts
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.kms.fake import FakeKMS
from secretum.imaging.archive import ImagingArchive
from secretum.imaging.render import Format, Window, render
from secretum.imaging.viewing import ImagingViewer, frame_source
from secretum.keys.keyring import KeyRing
from secretum.policy import care
from secretum.policy.care import CareBasis
from secretum.policy.guard import PolicyGuard
from secretum.records.files import FileStore
from secretum.records.service import RecordService
from secretum.records.store import RecordStore
from secretum.storage.blobs import FileSystemBlobStore
from secretum.storage.db import make_engine
from secretum.storage.schema import create_main_schema, create_vault_schema

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RADIOLOGIST = Actor("rad-bench", Role.PRACTITIONER, specialty="radiology")
READING = RequestContext(RADIOLOGIST, Purpose.TELERADIOLOGY, NOW)
PATIENT = "pat-bench"
ISSUER = "BENCH"
SESSION = "bench-session"
WINDOW = Window(40, 400)


def _slices(n: int, size: int = 512) -> list[bytes]:
    rng = np.random.default_rng(0)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for i in range(n):
        meta = FileMetaDataset()
        uid = generate_uid()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = "Bench^Viewer", "BENCH1", ISSUER
        ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20261129", "CT", 1, i + 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, float(i)], [1, 0, 0, 0, 1, 0]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def _world(tmp: Path, n: int) -> tuple[ImagingArchive, ImagingViewer, str, str, list[str]]:
    engine = make_engine(f"sqlite:///{tmp / 'main.db'}")
    vault = make_engine(f"sqlite:///{tmp / 'vault.db'}")
    create_main_schema(engine)
    create_vault_schema(vault)
    keyring = KeyRing(vault, FakeKMS())
    bind_row_mac(engine, keyring)
    blobs = FileSystemBlobStore(tmp / "blobs")
    blind = BlindIndex(os.urandom(32))
    audit = AuditLog(engine)
    records = RecordService(
        engine, RecordStore(keyring), FileStore(keyring, blobs), blind, audit, TableGuard([allow()])
    )
    own = RequestContext(Actor(PATIENT, Role.PATIENT), Purpose.PATIENT_REQUEST, NOW)
    records.create(own, {"resourceType": "Patient", "id": PATIENT}, resource_id=PATIENT)
    with engine.begin() as conn:
        care.start(
            conn,
            patient_id=PATIENT,
            practitioner_id=RADIOLOGIST.user_id,
            basis=CareBasis.REFERRAL,
            now=NOW - timedelta(days=1),
        )
    ConsentService(engine, audit, PolicyGuard()).grant(
        own.at(NOW - timedelta(days=1)),
        patient_id=PATIENT,
        purpose=Purpose.TELERADIOLOGY,
        text_sha256=default_texts().current(Purpose.TELERADIOLOGY, "en").sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    archive = ImagingArchive(engine, keyring, blobs, blind, audit, PolicyGuard())
    archive.register_patient_identifier(READING, PATIENT, ISSUER, "BENCH1")
    results = archive.ingest(READING, _slices(n))
    assert all(r.ok for r in results)
    [study] = archive.search_studies(READING, patient_id=PATIENT)
    [series] = archive.search_series(READING, study.study_uid)
    sops = [m.sop_instance_uid for m in archive.search_instances(READING, study.study_uid)]
    key = os.urandom(32)
    return archive, ImagingViewer(archive, lambda: key), study.study_uid, series.series_uid, sops


def _rate(work: Callable[[str], object], sops: list[str], rounds: int = 2) -> float:
    """Frames per second from the median per-frame time (after one warm-up pass)."""
    for sop in sops[:4]:
        work(sop)
    times = []
    for _ in range(rounds):
        for sop in sops:
            started = time.perf_counter()
            work(sop)
            times.append(time.perf_counter() - started)
    return 1 / statistics.median(times)


def run(quick: bool = False) -> list[Figure]:
    n = 24 if quick else 96
    with tempfile.TemporaryDirectory() as tmp:
        archive, viewer, study, series, sops = _world(Path(tmp), n)
        viewing = viewer.open(READING, study, series, binding=SESSION)

        def ticket_png(sop: str) -> bytes:
            src = viewer.frame(READING, viewing.ticket, SESSION, sop, 1)
            return render(src.pixels, src.module, Format.PNG, window=WINDOW)

        def audited_png(sop: str) -> bytes:
            reader = archive.open_series(READING, study, series)
            src = frame_source(reader, sop, 1)
            return render(src.pixels, src.module, Format.PNG, window=WINDOW)

        def ticket_raw(sop: str) -> bytes:
            return viewer.frame(READING, viewing.ticket, SESSION, sop, 1).pixels

        reader = archive.open_series(READING, study, series)

        def reader_raw(sop: str) -> bytes:
            return reader.read_frame(sop, 1)

        sample = viewer.frame(READING, viewing.ticket, SESSION, sops[0], 1)

        def png_only(_: str) -> bytes:
            return render(sample.pixels, sample.module, Format.PNG, window=WINDOW)

        def jpeg_only(_: str) -> bytes:
            return render(sample.pixels, sample.module, Format.JPEG, window=WINDOW)

        ticket = _rate(ticket_png, sops)
        audited = _rate(audited_png, sops)
        raw_ticket = _rate(ticket_raw, sops)
        raw_reader = _rate(reader_raw, sops)
        png = _rate(png_only, sops[:16])
        jpeg = _rate(jpeg_only, sops[:16])
    return [
        Figure(
            f"viewer frame under a ticket, PNG 512x512 ({n} slices)",
            ticket,
            "frames/s",
            "an audited opening of the series per frame",
            audited,
            "ratio >= 1.0",
            ticket >= audited,
        ),
        Figure(
            "frame under a ticket, no rendering (policy re-asked)",
            raw_ticket,
            "frames/s",
            "read_frame on a reader opened once (no policy)",
            raw_reader,
        ),
        Figure("render 512x512 16-bit to PNG", png, "frames/s"),
        Figure("render 512x512 16-bit to JPEG", jpeg, "frames/s"),
    ]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure)
