"""Shared world of the DIMSE tests (imported by them; holds no test).

The imaging world (real policy, SQLite and PostgreSQL) plus: an internal CA, the server's
certificate, registered nodes with their certificate files (a modality that stores, a PACS that
queries and retrieves and is referred to the patient, a node with no scope), and the DICOM
server on a free port. :func:`scu` opens a pynetdicom association over TLS 1.3 as a node.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from imaging_archive_world import NOW, ImagingWorld
from secretum.imaging.dimse import DicomServer, client_ssl_context, server_ssl_context
from secretum.imaging.nodes import Node, NodeRegistry
from secretum.pki import (
    CertificateAuthority,
    create_root_ca,
    generate_leaf_key,
    issue_client_certificate,
    issue_server_certificate,
    write_certificates_pem,
    write_private_key_pem,
)
from secretum.policy import care
from secretum.policy.care import CareBasis

AE_TITLE = "SECRETUM"


@dataclass
class Files:
    cert: Path
    key: Path


@dataclass
class DimseWorld:
    iw: ImagingWorld
    registry: NodeRegistry
    server: DicomServer
    port: int
    ca: CertificateAuthority
    cafile: Path
    base: Path
    files: dict[str, Files] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)

    def issue(self, name: str, *, ca: CertificateAuthority | None = None) -> Files:
        """A client key and certificate (from ``ca``, default the internal CA) on disk."""
        key = generate_leaf_key()
        cert = issue_client_certificate(ca or self.ca, name, key.public_key(), NOW)
        files = Files(self.base / f"{name}.pem", self.base / f"{name}.key")
        write_certificates_pem(files.cert, [cert])
        write_private_key_pem(files.key, key)
        return files

    def add_node(
        self, ae: str, scopes: str, *, host: str | None = None, port: int | None = None
    ) -> Node:
        files = self.issue(ae.lower())
        node = self.registry.register(
            ae, ae, files.cert.read_bytes(), scopes.split(","), NOW, host=host, port=port
        )
        self.files[ae], self.nodes[ae] = files, node
        return node

    def refer(self, patient: str, node: Node) -> None:
        with self.iw.engine.begin() as conn:
            care.start(conn, patient_id=patient, practitioner_id=node.node_id,
                       basis=CareBasis.REFERRAL, now=NOW - timedelta(hours=1))  # fmt: skip

    def context(self, files: Files | None, *, tls12: bool = False) -> ssl.SSLContext:
        ctx = client_ssl_context(self.cafile, files.cert if files else None,
                                 files.key if files else None)  # fmt: skip
        if tls12:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def scu(
    dw: DimseWorld,
    ae_title: str,
    files: Files | None = None,
    *,
    contexts: list[Any] | None = None,
    tls12: bool = False,
    handlers: list[Any] | None = None,
    roles: list[Any] | None = None,
) -> Association:
    """An association from ``ae_title`` presenting ``files`` (default: that node's own)."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for cx in contexts or [
        Verification,
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    ]:
        ae.add_requested_context(cx)
    files = files if files is not None else dw.files.get(ae_title)
    return ae.associate(
        "127.0.0.1",
        dw.port,
        ae_title=AE_TITLE,
        tls_args=(dw.context(files, tls12=tls12), "localhost"),
        evt_handlers=handlers,
        ext_neg=roles,
    )


def get_scu(dw: DimseWorld, ae_title: str, received: list[Any]) -> Association:
    """An association for C-GET: CT storage with the SCP role, instances kept in ``received``."""

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    return scu(
        dw,
        ae_title,
        contexts=[StudyRootQueryRetrieveInformationModelGet, CTImageStorage],
        handlers=[(evt.EVT_C_STORE, on_store)],
        roles=[build_role(CTImageStorage, scp_role=True)],
    )


@pytest.fixture(name="dw")
def dimse_world(iw: ImagingWorld, tmp_path: Path) -> Iterator[DimseWorld]:
    base = tmp_path / "pki"
    base.mkdir()
    ca = create_root_ca(NOW)
    cafile = base / "ca.pem"
    write_certificates_pem(cafile, [ca.certificate])
    key = generate_leaf_key()
    cert = issue_server_certificate(ca, ["localhost", "127.0.0.1"], key.public_key(), NOW)
    write_certificates_pem(base / "server.pem", [cert, ca.certificate])
    write_private_key_pem(base / "server.key", key)
    # our own client certificate, for the store associations of C-MOVE
    ckey = generate_leaf_key()
    write_certificates_pem(
        base / "self.pem", [issue_client_certificate(ca, "secretum-dicom", ckey.public_key(), NOW)]
    )
    write_private_key_pem(base / "self.key", ckey)
    registry = NodeRegistry(iw.engine, iw.audit)
    server = DicomServer(
        iw.archive,
        registry,
        iw.audit,
        ae_title=AE_TITLE,
        ssl_context=server_ssl_context(base / "server.pem", base / "server.key", cafile),
        move_ssl_context=client_ssl_context(cafile, base / "self.pem", base / "self.key"),
        clock=lambda: NOW,
    )
    port = server.start("127.0.0.1", 0)
    world = DimseWorld(iw, registry, server, port, ca, cafile, base)
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    world.add_node("MODALITY", "store")
    pacs = world.add_node("PACS", "query,retrieve")
    world.refer("pat-1", pacs)
    world.add_node("NOSCOPE", "")
    try:
        yield world
    finally:
        server.stop()
