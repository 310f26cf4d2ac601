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


def add_study(
    world: WebWorld,
    name: str,
    *,
    sender: str = "radio",
    purpose: Purpose = Purpose.TELERADIOLOGY,
    register: bool = True,
    **kwargs: Any,
) -> tuple[str, str, list[str]]:
    """A phantom study of patient ``name`` sent by ``sender`` (who first registers the
    patient's DICOM identifier, unless ``register`` is False: the study then waits for
    reconciliation, readable by no one): (study, series, SOP UIDs)."""
    ctx = RequestContext(world.users[sender].actor, purpose, world.clock.now)
    imaging = world.services.imaging
    if register and f"dpi:{name}" not in world.ids:
        imaging.register_patient_identifier(ctx, world.users[name].user_id, ISSUER, f"DPI-{name}")
        world.ids[f"dpi:{name}"] = f"DPI-{name}"
    slices = make_phantom(patient_id=f"DPI-{name}", issuer=ISSUER, **kwargs)
    results = imaging.ingest(ctx, (to_bytes(ds) for ds in slices))
    assert all(r.status is InstanceStatus.STORED for r in results), results
    study = str(slices[0].StudyInstanceUID)
    series = str(slices[0].SeriesInstanceUID)
    sops = [str(ds.SOPInstanceUID) for ds in slices]
    world.ids.setdefault(f"study:{name}", study)
    world.ids.setdefault(f"series:{name}", series)
    world.ids.setdefault(f"sops:{name}", sops)
    return study, series, sops


def seed_matrix_imaging(world: WebWorld) -> None:
    """A study for each patient of the access matrix: ``own`` and ``nocare`` sent by the
    radiologist, ``other`` by its GP (teleconsultation), ``noconsent``'s unmatched (nobody
    could register its identifier without a consent); and ``ticket:any``, a viewing ticket
    of the radiologist's session (anyone else presenting it is refused)."""
    add_study(world, "own")
    add_study(world, "other", sender="gp", purpose=Purpose.TELECONSULTATION)
    add_study(world, "nocare")
    add_study(world, "noconsent", register=False)
    radio = world.users["radio"]
    viewing = world.services.imaging_viewer.open(
        RequestContext(radio.actor, Purpose.TELERADIOLOGY, world.clock.now),
        world.ids["study:nocare"],
        world.ids["series:nocare"],
        binding=radio.session_id,
    )
    world.ids["ticket:any"] = viewing.ticket


def imaging_clinic(tmp_path: Path, **settings: Any) -> WebWorld:
    world = clinic(tmp_path, **settings)
    for name in ("own", "nocare"):
        add_study(world, name)
    return world
