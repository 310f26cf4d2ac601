"""A small synthetic CT study (fictitious patient, no real data) for the demo clinic, built
with pydicom in memory (modelled on ``shared/dicom/make_ct.py``): a few axial slices of a
disc in air, 64x64, 16-bit, Explicit VR Little Endian."""

from __future__ import annotations

import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SIZE = 64


def _pixels(index: int) -> bytes:
    out = bytearray()
    centre, radius = SIZE / 2, SIZE / 3 - index
    for y in range(SIZE):
        for x in range(SIZE):
            inside = (x - centre) ** 2 + (y - centre) ** 2 < radius**2
            out += (1064 if inside else 24).to_bytes(2, "little")
    return bytes(out)


def synthetic_ct(
    patient_id: str,
    issuer: str,
    name: str,
    *,
    slices: int = 4,
    study_date: str = "20261201",
    description: str = "CT THORAX (synthetic)",
) -> list[bytes]:
    """Part-10 files of one synthetic CT series."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for i in range(slices):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, patient_id, issuer
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyDescription = study_date, "101500", description
        ds.AccessionNumber, ds.SeriesNumber, ds.InstanceNumber = "DEMO-1", 1, i + 1
        ds.BurnedInAnnotation = "NO"
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 1.0
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = _pixels(i)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
            CTImageStorage,
            ds.SOPInstanceUID,
        )
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out
