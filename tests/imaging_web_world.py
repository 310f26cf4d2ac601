"""The web world of :mod:`web_world` with imaging: a phantom CT for two patients (holds no test).

``radio`` (radiologist, in the care team of ``own`` and ``nocare``, both consenting to
teleradiology) registers each patient's DICOM identifier and sends a study of
:func:`imaging_phantom.make_phantom`. ``gp`` cares for ``own`` (teleconsultation consent) but
not for ``nocare``; ``other`` is a patient of ``gp`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imaging_data import to_bytes
from imaging_phantom import make_phantom
from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.imaging.archive_model import InstanceStatus
from web_world import WebWorld, clinic

ISSUER = "HOPITAL-NORD"


def add_study(world: WebWorld, name: str, **kwargs: Any) -> tuple[str, str, list[str]]:
    """A phantom study of patient ``name`` sent by ``radio``: (study, series, SOP UIDs)."""
    radio = world.users["radio"]
    ctx = RequestContext(radio.actor, Purpose.TELERADIOLOGY, world.clock.now)
    imaging = world.services.imaging
    if f"dpi:{name}" not in world.ids:
        imaging.register_patient_identifier(ctx, world.users[name].user_id, ISSUER, f"DPI-{name}")
        world.ids[f"dpi:{name}"] = f"DPI-{name}"
    slices = make_phantom(patient_id=f"DPI-{name}", issuer=ISSUER, **kwargs)
    results = imaging.ingest(ctx, (to_bytes(ds) for ds in slices))
    assert all(r.status is InstanceStatus.STORED for r in results), results
    return (
        str(slices[0].StudyInstanceUID),
        str(slices[0].SeriesInstanceUID),
        [str(ds.SOPInstanceUID) for ds in slices],
    )


def imaging_clinic(tmp_path: Path, **settings: Any) -> WebWorld:
    world = clinic(tmp_path, **settings)
    for name in ("own", "nocare"):
        study, series, sops = add_study(world, name)
        world.ids[f"study:{name}"] = study
        world.ids[f"series:{name}"] = series
        world.ids[f"sops:{name}"] = sops
    return world
