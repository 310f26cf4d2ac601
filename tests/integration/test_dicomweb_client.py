"""dicomweb-client (PyPI) as a real client of the real TLS 1.3 server, both directions: a
practitioner stores a study (STOW-RS), the radiologist searches (QIDO-RS) and retrieves it
(WADO-RS: instances, metadata, frames, bulk data); SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from sqlalchemy import select

from dicomweb_world import PUBLIC, dicomweb_world
from imaging_data import make_ct, to_bytes
from secretum.audit.store import audit_entries
from secretum.pki import (
    CertificateAuthority,
    ServerIdentity,
    create_root_ca,
    generate_leaf_key,
    issue_client_certificate,
    load_or_create_server_identity,
    write_certificates_pem,
    write_private_key_pem,
)
from secretum.policy import care
from secretum.policy.care import CareBasis
from secretum.web import ServerThread
from secretum.web.deps import CSRF_HEADER, SESSION_COOKIE
from web_world import WebWorld

NOW = datetime.now(UTC)  # real handshakes check validity against the real clock


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_root_ca(NOW)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority) -> ServerIdentity:
    base = tmp_path_factory.mktemp("pki")
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
        world.app,
        certfile=identity.certfile,
        keyfile=identity.keyfile,
        cafile=identity.cafile,
        startup_timeout=60,  # a loaded CI machine
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


# -- imaging nodes (mutual TLS) ----------------------------------------------------------------


def _node_files(ca: CertificateAuthority, base: Path, name: str) -> tuple[Path, Path, Any]:
    key = generate_leaf_key()
    cert = issue_client_certificate(ca, name, key.public_key(), NOW)
    certfile = write_certificates_pem(base / f"{name}.pem", [cert])
    keyfile = write_private_key_pem(base / f"{name}.key", key)
    return Path(certfile), Path(keyfile), cert


def _node_client(
    server: ServerThread, identity: ServerIdentity, cert: tuple[Path, Path] | None
) -> DICOMwebClient:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(identity.cafile)
    if cert is not None:
        session.cert = (str(cert[0]), str(cert[1]))
    return DICOMwebClient(
        server.url.replace("127.0.0.1", "localhost") + "/dicomweb", session=session
    )


def _node_audit(world: WebWorld, node_id: str) -> list[dict[str, Any]]:
    with world.platform.engine.connect() as conn:
        query = select(audit_entries).where(audit_entries.c.actor_id == node_id)
        return [dict(r) for r in conn.execute(query.order_by(audit_entries.c.seq)).mappings()]


def test_nodes_authenticate_with_their_certificate_within_their_scopes(
    served: tuple[WebWorld, ServerThread],
    identity: ServerIdentity,
    ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    world, server = served
    registry = world.services.imaging_nodes
    now = world.clock.now
    pacs_cert, pacs_key, pacs_x509 = _node_files(ca, tmp_path, "pacs-1")
    ct_cert, ct_key, ct_x509 = _node_files(ca, tmp_path, "ct-1")
    stranger_cert, stranger_key, _ = _node_files(ca, tmp_path, "unregistered-1")
    pacs = registry.register("PACS", "PACS1", pacs_x509, ["store", "query", "retrieve"], now)
    modality = registry.register("CT scanner", "CT1", ct_x509, ["store"], now)
    own = world.users["own"].user_id
    with world.platform.engine.begin() as conn:  # the care team refers own to the PACS
        care.start(
            conn,
            patient_id=own,
            practitioner_id=pacs.node_id,
            basis=CareBasis.REFERRAL,
            now=now - timedelta(days=1),
        )

    # the modality stores (own consents to teleradiology)
    slices = make_ct(2)
    study = str(slices[0].StudyInstanceUID)
    ct = _node_client(server, identity, (ct_cert, ct_key))
    answer = ct.store_instances([pydicom.dcmread(io.BytesIO(to_bytes(ds))) for ds in slices])
    assert len(answer.ReferencedSOPSequence) == 2
    # ... but may neither search nor read: 403, each refusal audited
    before = len(_node_audit(world, modality.node_id))
    for attempt in (
        lambda: ct.search_for_studies(search_filters={"StudyInstanceUID": study}),
        lambda: ct.retrieve_study(study),
        lambda: ct.retrieve_series_metadata(study, str(slices[0].SeriesInstanceUID)),
    ):
        with pytest.raises(requests.HTTPError) as refused:
            attempt()
        assert refused.value.response.status_code == 403
    rows = _node_audit(world, modality.node_id)[before:]
    assert len(rows) == 3 and all(r["outcome"] != 0 for r in rows)

    # the referred PACS searches and reads
    reader = _node_client(server, identity, (pacs_cert, pacs_key))
    [found] = reader.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert found["0020000D"]["Value"] == [study]
    assert len(reader.retrieve_study(study)) == 2

    # an unregistered certificate of the same CA, or none: 401
    for cert in ((stranger_cert, stranger_key), None):
        with pytest.raises(requests.HTTPError) as refused:
            _node_client(server, identity, cert).search_for_studies()
        assert refused.value.response.status_code == 401
    # a revoked node: 401
    registry.revoke(pacs.node_id, now)
    with pytest.raises(requests.HTTPError) as refused:
        reader.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert refused.value.response.status_code == 401
