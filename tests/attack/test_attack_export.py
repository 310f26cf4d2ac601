"""The attacker against the de-identified export (issue 10, section 5): a practitioner who
exports without the research consent, or a recipient who looks in what left for the patient's
identity. Every element of every exported file is checked against Table E.1-1 (the action the
table gives it under the export's options), and no identifying value of the original (names,
ids, dates, UIDs, addresses, private data) appears anywhere in the exported bytes."""

from __future__ import annotations

import io
import itertools
import zipfile

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    ImagingWorld,
    imaging_world,
)
from imaging_export_world import ct_study, zip_datasets
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Purpose
from secretum.imaging.deid import DeidOptions, effective_action
from secretum.imaging.export import DeidentifiedExport, ExportRequest

#: PS3.15 Table E.1-1 actions that keep the original value.
_KEEPS = {"K", "C"}


def _identifying(datasets: list[Dataset], options: DeidOptions) -> set[str]:
    """Every value of the originals that the profile (with ``options``) must not let out:
    the values of elements whose action removes or replaces them, and every UID that is not
    a registered DICOM UID, and every private value."""
    found: set[str] = set()

    def walk(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
                continue
            if elem.tag.is_private:
                if elem.VR in ("LO", "SH", "LT", "ST", "UT", "PN"):
                    found.add(str(elem.value))
                continue
            action = effective_action(int(elem.tag), options)
            text = str(elem.value)
            if (elem.VR == "UI" and UID(text).name == text) or (
                action is not None
                and action not in _KEEPS
                and len(text) >= 4
                and elem.VR in ("PN", "LO", "SH", "DA", "DT", "LT", "ST", "UT", "AE")
            ):
                found.add(text)

    for ds in datasets:
        walk(ds)
    return found


def _check_against_table(ds: Dataset, original: Dataset, options: DeidOptions) -> None:
    """Each element of an exported dataset, as Table E.1-1 says under ``options``."""
    for elem in ds:
        tag = int(elem.tag)
        if elem.tag.is_private:
            pytest.fail(f"a private element left: {elem.tag}")
        action = effective_action(tag, options)
        before = original.get(elem.tag)
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                orig_item = (
                    before.value[index]
                    if before is not None and len(before.value) > index
                    else item
                )
                _check_against_table(item, orig_item, options)
            continue
        if action == "X":
            pytest.fail(f"{elem.keyword or elem.tag} must be removed (X)")
        if action in ("Z", "D") and before is not None and before.value not in ("", None):
            assert elem.value != before.value, f"{elem.keyword} kept its value ({action})"
        if (
            (
                action == "U"
                or (
                    elem.VR == "UI"
                    and before is not None
                    and UID(str(before.value)).name == str(before.value)
                )
            )
            and before is not None
            and before.value
        ):
            assert str(elem.value).startswith("2.25."), elem.keyword
            assert elem.value != before.value, elem.keyword
        if action is None and elem.VR == "PN":
            assert not str(elem.value), f"{elem.keyword}: a name outside the table"


ALL_OPTIONS = [DeidOptions(*flags) for flags in itertools.product((False, True), repeat=4)]


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=lambda o: "-".join(o.columns()) or "basic")
def test_no_element_leaks_against_the_action_table(iw: ImagingWorld, options: DeidOptions) -> None:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    originals = ct_study(iw, 2)
    by_number = {int(ds.InstanceNumber): ds for ds in originals}
    uid = str(originals[0].StudyInstanceUID)
    plan = DeidentifiedExport(iw.archive).prepare(READING, uid, ExportRequest("leak", options))
    out = io.BytesIO()
    plan.write_zip(out)
    _manifest, exported = zip_datasets(out.getvalue())
    assert len(exported) == 2
    for ds in exported:
        _check_against_table(ds, by_number[int(ds.InstanceNumber)], options)
    # no identifying value of the originals anywhere in the files or the manifest
    secrets_ = _identifying(originals, options)
    assert {
        "Martin^Sophie",
        "SYN0001",
        "20261129",
        uid,
    } <= secrets_ or options.retain_long_modified_dates
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            for value in secrets_:
                assert value.encode() not in data, f"{value!r} leaked into {name}"
            assert b"Martin" not in data and b"SYN0001" not in data and uid.encode() not in data


def test_export_for_research_without_the_research_consent_is_refused(iw: ImagingWorld) -> None:
    iw.patient("pat-1")  # teleradiology consent only
    iw.register("pat-1", "SYN0001")
    uid = str(ct_study(iw, 1)[0].StudyInstanceUID)
    research = RequestContext(RADIOLOGIST, Purpose.RESEARCH, NOW)
    with pytest.raises(AccessDenied) as refused:
        DeidentifiedExport(iw.archive).prepare(research, uid, ExportRequest("cohort"))
    assert refused.value.reason == "deny.no-consent"
