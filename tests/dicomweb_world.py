"""Shared helpers of the DICOMweb tests (imported by them; holds no test).

The clinic of :mod:`web_world` (real app, real sessions, the real policy), with the DICOM
identifier of ``own`` registered (issuer ``HOPITAL-NORD``, PatientID ``SYN0001``: what
:func:`imaging_data.make_ct` writes), so a study ``gp`` sends is stored under ``own``'s key and
``radio`` (care team, teleradiology consent) reads it. ``nocare`` has no relationship with
``gp``; ``noconsent`` gave no teleradiology consent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from web_world import WebWorld, clinic

ISSUER = "HOPITAL-NORD"
DICOM_PID = "SYN0001"
PUBLIC = "https://dicom.clinic.test"
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'


def dicomweb_world(tmp_path: Path, **settings: Any) -> WebWorld:
    settings.setdefault("public_url", PUBLIC)
    world = clinic(tmp_path, **settings)
    own = world.users["own"].user_id
    gp = world.users["gp"].actor
    world.services.imaging.register_patient_identifier(
        RequestContext(gp, Purpose.TELERADIOLOGY, world.clock.now), own, ISSUER, DICOM_PID
    )
    return world


def multipart(
    parts: list[bytes], boundary: str = "b0und4ry", part_type: str = "application/dicom"
) -> bytes:
    """A multipart/related body as dicomweb-client writes it."""
    out = b""
    for part in parts:
        out += f"\r\n--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part
    return out + f"\r\n--{boundary}--".encode()


def stow_headers(boundary: str = "b0und4ry") -> dict[str, str]:
    return {"content-type": STOW_TYPE.format(boundary), "accept": "application/dicom+json"}


def split_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Type, data) of each part of a multipart/related answer."""
    found = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    assert found, content_type
    boundary = found.group(1).encode()
    out = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        ctype = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-type:"):
                ctype = line.split(":", 1)[1].strip()
        out.append((ctype, data))
    return out


def ct_files(n: int = 3, **kwargs: Any) -> tuple[str, str, list[bytes]]:
    """(study UID, series UID, Part-10 files) of a small synthetic CT of ``own``."""
    slices = make_ct(n, **kwargs)
    return (
        str(slices[0].StudyInstanceUID),
        str(slices[0].SeriesInstanceUID),
        [to_bytes(ds) for ds in slices],
    )
