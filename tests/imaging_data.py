"""Synthetic DICOM for the imaging tests, built in memory with pydicom (no .dcm committed).

Modelled on /work/shared/dicom/make_ct.py (fictitious patient), with the identifying
attributes a real modality writes: names, IDs, dates, institution, device, a private block,
nested sequences with names and references. Matrices are tiny (8x8) so tests stay fast.
"""

from __future__ import annotations

import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    generate_uid,
)

ROWS = COLS = 8


def _pixels(seed: int, n: int) -> bytes:
    # Bytes below 0x20 only, so no letter run can appear in pixel data by chance.
    return bytes(((seed * 7 + i * 13) % 0x1F) for i in range(n))


def _patient(ds: Dataset, patient_id: str, name: str) -> None:
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOPITAL-NORD"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "056Y"
    ds.PatientSize = 1.68
    ds.PatientWeight = 61.5
    ds.OtherPatientIDs = "NIR-2700175123456"
    item = Dataset()
    item.PatientID = "IPP-998877"
    item.IssuerOfPatientID = "CLINIQUE-SUD"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.PatientAddress = "12 rue des Lilas^Lyon"
    ds.PatientComments = "Allergic to iodine, lives with Dupont family"


def _study(ds: Dataset, study_uid: str, study_date: str, accession: str) -> None:
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.ContentTime = "120102"
    ds.AccessionNumber = accession
    ds.StudyID = "S1"
    ds.StudyDescription = "CT THORAX Martin"
    ds.SeriesDescription = "AXIAL 1mm"
    ds.InstitutionName = "Hopital Nord"
    ds.InstitutionAddress = "1 avenue du Parc, Lyon"
    ds.ReferringPhysicianName = "Durand^Pierre^^Dr"
    ds.PerformingPhysicianName = "Bernard^Claire"
    ds.OperatorsName = "Petit^Louis"
    ds.StationName = "CT-NORD-01"
    ds.DeviceSerialNumber = "SN-4242-XYZ"
    ds.Manufacturer = "ACME Imaging"
    ds.ManufacturerModelName = "Scanner 3000"


def _private(ds: Dataset) -> None:
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "Martin^Sophie private copy")
    block.add_new(0x11, "DS", "3.5")


def file_meta(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta


def make_ct(
    n_slices: int = 3,
    *,
    patient_id: str = "SYN0001",
    name: str = "Martin^Sophie",
    study_uid: str | None = None,
    study_date: str = "20261129",
    accession: str = "ACC1",
) -> list[Dataset]:
    """A small CT series; slice i>0 references slice 0 (ReferencedImageSequence)."""
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    out: list[Dataset] = []
    for i in range(n_slices):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.Modality = "CT"
        _patient(ds, patient_id, name)
        _study(ds, study_uid, study_date, accession)
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = 1.0
        ds.PixelSpacing = [0.7, 0.7]
        ds.BurnedInAnnotation = "NO"
        equipment = Dataset()
        equipment.Manufacturer = "ACME Imaging"
        equipment.InstitutionName = "Hopital Nord"
        equipment.OperatorsName = "Petit^Louis"
        equipment.StationName = "CT-NORD-01"
        ds.ContributingEquipmentSequence = Sequence([equipment])
        if out:
            ref = Dataset()
            ref.ReferencedSOPClassUID = CTImageStorage
            ref.ReferencedSOPInstanceUID = out[0].SOPInstanceUID
            ds.ReferencedImageSequence = Sequence([ref])
        _private(ds)
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = _pixels(i, ROWS * COLS * 2)
        file_meta(ds)
        out.append(ds)
    return out


def make_us(*, burned_in: str | None = "YES") -> Dataset:
    """A single-frame RGB ultrasound image (the classic carrier of burned-in text)."""
    ds = Dataset()
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    _patient(ds, "SYN0002", "Leroy^Anne")
    _study(ds, generate_uid(), "20261130", "ACC2")
    ds.SeriesInstanceUID = generate_uid()
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels(5, ROWS * COLS * 3)
    file_meta(ds)
    return ds


def to_bytes(ds: Dataset, *, implicit: bool = False) -> bytes:
    """Encode as a Part-10 file (preamble, DICM, file meta, data set)."""
    if implicit:
        from pydicom.uid import ImplicitVRLittleEndian

        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
