"""dicomweb-client (PyPI) as a real client of the real TLS 1.3 server, both directions: a
practitioner stores a study (STOW-RS), the radiologist searches (QIDO-RS) and retrieves it
(WADO-RS: instances, metadata, frames, bulk data); SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from dicomweb_world import PUBLIC, dicomweb_world
from imaging_data import make_ct, to_bytes
from secretum.pki import ServerIdentity, create_root_ca, load_or_create_server_identity
from secretum.web import ServerThread
from secretum.web.deps import CSRF_HEADER, SESSION_COOKIE
from web_world import WebWorld

NOW = datetime.now(UTC)  # real handshakes check validity against the real clock


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> ServerIdentity:
    base = tmp_path_factory.mktemp("pki")
    ca = create_root_ca(NOW)
    return load_or_create_server_identity(
        base / "server",
        ca_certificate=ca.certificate,
        unlock_ca=lambda: ca,
        names=["localhost", "127.0.0.1"],
        now=NOW,
    )


@pytest.fixture
def served(
    tmp_path: Path, db_url: str, identity: ServerIdentity
) -> Iterator[tuple[WebWorld, ServerThread]]:
    world = dicomweb_world(tmp_path, database_url=db_url)
    with ServerThread(
        world.app, certfile=identity.certfile, keyfile=identity.keyfile, cafile=identity.cafile
    ) as server:
        yield world, server


def _client(
    world: WebWorld, server: ServerThread, identity: ServerIdentity, who: str
) -> DICOMwebClient:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the CA below
    session.verify = str(identity.cafile)
    session.cookies.set(SESSION_COOKIE, world.users[who].session_id)
    session.headers[CSRF_HEADER] = world.csrf(who)
    url = server.url.replace("127.0.0.1", "localhost") + "/dicomweb"
    return DICOMwebClient(url, session=session)


def test_store_then_search_and_retrieve(
    served: tuple[WebWorld, ServerThread], identity: ServerIdentity
) -> None:
    world, server = served
    slices = make_ct(4)
    files = {str(ds.SOPInstanceUID): to_bytes(ds) for ds in slices}
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    sender = _client(world, server, identity, "gp")
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in files.values()]
    answer = sender.store_instances(datasets)
    assert len(answer.ReferencedSOPSequence) == 4
    assert "FailedSOPSequence" not in answer

    reader = _client(world, server, identity, "radio")
    own = world.users["own"].user_id
    [found] = reader.search_for_studies(
        search_filters={"PatientID": own, "StudyDate": "20261101-20261130"},
        fuzzymatching=True,
        fields=["StudyDescription", "ModalitiesInStudy"],
    )
    assert found["0020000D"]["Value"] == [study]
    [s] = reader.search_for_series(study)
    assert s["0020000E"]["Value"] == [series]
    instances = reader.search_for_instances(study, series)
    assert len(instances) == 4

    retrieved = reader.retrieve_study(study)
    assert len(retrieved) == 4
    for ds in retrieved:
        assert ds.PixelData == pydicom.dcmread(io.BytesIO(files[str(ds.SOPInstanceUID)])).PixelData

    metadata = reader.retrieve_series_metadata(study, series)
    assert len(metadata) == 4
    sop = str(slices[2].SOPInstanceUID)
    [frame] = reader.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
    assert frame == slices[2].PixelData
    meta = reader.retrieve_instance_metadata(study, series, sop)
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri.startswith(PUBLIC)
    local = uri.replace(PUBLIC, server.url.replace("127.0.0.1", "localhost"))
    assert reader.retrieve_bulkdata(local) == [slices[2].PixelData]
    ds = reader.retrieve_instance(study, series, sop)
    assert ds.SOPInstanceUID == sop

    # someone else's client gets nothing (an empty search; a retrieval fails)
    stranger = _client(world, server, identity, "other")
    assert stranger.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    with pytest.raises(requests.HTTPError):
        stranger.retrieve_study(study)
