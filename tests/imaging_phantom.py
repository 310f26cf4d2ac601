"""A synthetic CT that looks like one (for rendering, the viewer and its browser test).

A chest-like phantom in Hounsfield units: air outside, soft tissue (40 HU) body, two lungs
(-800 HU) and a spine (700 HU) whose sizes change from slice to slice, so two slices never
render alike and the CT presets visibly change the picture. Stored like
/work/shared/dicom/make_ct.py stores its noise (16-bit unsigned, 12 bits stored, intercept
-1024), with a default window (soft tissue). Fictitious patient; built in memory.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from imaging_data import file_meta


def phantom_slice(i: int, n: int, size: int) -> np.ndarray:
    """HU values of slice ``i`` of ``n`` (size x size)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    t = i / max(n - 1, 1)
    hu = np.full((size, size), -1000.0)
    body = (x / 0.42) ** 2 + (y / 0.32) ** 2 <= 1
    hu[body] = 40.0
    lung_r = 0.10 + 0.08 * np.sin(np.pi * t)
    for cx in (-0.17, 0.17):
        hu[((x - cx) / lung_r) ** 2 + ((y + 0.02) / (lung_r * 1.5)) ** 2 <= 1] = -800.0
    spine_r = 0.04 + 0.03 * t
    hu[(x / spine_r) ** 2 + ((y - 0.2) / spine_r) ** 2 <= 1] = 700.0
    # a small bright marker that walks across the slices (slice i is never slice j)
    mx = -0.3 + 0.6 * t
    hu[((x - mx) ** 2 + (y + 0.25) ** 2) <= 0.02**2] = 1500.0
    return hu


def make_phantom(
    n_slices: int = 12,
    size: int = 128,
    *,
    patient_id: str = "SYN0001",
    issuer: str = "HOPITAL-NORD",
    name: str = "Test^Synthetic",
    study_uid: str | None = None,
    description: str = "AXIAL 5mm",
    series_number: int = 1,
    pixel_representation: int = 0,
    photometric: str = "MONOCHROME2",
    modality: str = "CT",
    window: bool = True,
) -> list[Dataset]:
    """The phantom's slices; ``window`` False stores no default window (as many MR do)."""
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    out = []
    for i in range(n_slices):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, patient_id, issuer
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261129", "120000", "ACC1"
        ds.StudyDescription, ds.SeriesDescription = "CT THORAX", description
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, i + 1
        ds.ImagePositionPatient = [0, 0, -100.0 + 5.0 * i]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness, ds.PixelSpacing = 5.0, [2.5, 2.5]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = pixel_representation
        if window:
            ds.WindowCenter, ds.WindowWidth = 40, 400
        hu = phantom_slice(i, n_slices, size)
        if pixel_representation:
            ds.RescaleIntercept, ds.RescaleSlope = 0, 1
            ds.PixelData = np.clip(hu, -2048, 2047).astype("<i2").tobytes()
        else:
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = np.clip(hu + 1024, 0, 4095).astype("<u2").tobytes()
        file_meta(ds)
        out.append(ds)
    return out
