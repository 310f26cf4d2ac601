"""The attacker on the DICOM port (DIMSE over TLS 1.3): a client with no certificate, another
CA's, another node's, an unregistered or revoked AE title, a TLS 1.2 client, a node asking for
what its scopes or the policy do not give it, a node row widened by hand in the database. Each
is refused (handshake cut, A-ASSOCIATE-RJ, presentation context rejected, 0x0124), nothing is
stored or sent, refusals are audited, and the server stays up.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)
from sqlalchemy import update

from dimse_world import AE_TITLE, DimseWorld, dimse_world, get_scu, scu  # noqa: F401
from imaging_archive_world import NOW, ImagingWorld, imaging_world  # noqa: F401 (fixture)
from imaging_data import make_ct
from secretum.audit.model import EventType
from secretum.imaging.tables import imaging_nodes
from secretum.pki import create_root_ca

FIND = StudyRootQueryRetrieveInformationModelFind
GET = StudyRootQueryRetrieveInformationModelGet


def _still_up(dw: DimseWorld) -> None:
    assoc = scu(dw, "PACS")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()


def _refused(assoc: Any) -> bool:
    return not assoc.is_established


def _node_auth_failures(dw: DimseWorld) -> int:
    rows = dw.iw.audit_rows("unknown-node")
    return sum(1 for r in rows if r["event_type"] == EventType.SECURITY_ALERT)


def test_unknown_ae_and_unregistered_certificate(dw: DimseWorld) -> None:
    stranger = dw.issue("stranger")  # from the internal CA, never registered
    assoc = scu(dw, "STRANGER", stranger)
    assert _refused(assoc) and assoc.is_rejected
    assoc = scu(dw, "MODALITY", stranger)  # a registered AE title with an unbound certificate
    assert _refused(assoc) and assoc.is_rejected
    assert _node_auth_failures(dw) == 2
    _still_up(dw)


def test_certificate_of_another_node(dw: DimseWorld) -> None:
    """The PACS's certificate with the modality's AE title (or the other way round)."""
    assoc = scu(dw, "MODALITY", dw.files["PACS"])
    assert _refused(assoc) and assoc.is_rejected
    assoc = scu(dw, "PACS", dw.files["MODALITY"])
    assert _refused(assoc) and assoc.is_rejected
    _still_up(dw)


def test_no_certificate_or_another_ca(dw: DimseWorld) -> None:
    assert _refused(_no_cert(dw))
    other = dw.issue("pacs-forged", ca=create_root_ca(NOW, common_name="Other CA"))
    assert _refused(scu(dw, "PACS", other))
    _still_up(dw)


def _no_cert(dw: DimseWorld) -> Any:
    ae = AE(ae_title="PACS")
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    ctx = dw.context(None)
    return ae.associate("127.0.0.1", dw.port, ae_title=AE_TITLE, tls_args=(ctx, "localhost"))


def test_tls12_client_refused(dw: DimseWorld) -> None:
    assoc = scu(dw, "PACS", tls12=True)
    assert _refused(assoc)
    # a plain TLS 1.2 handshake with OpenSSL's client: no protocol in common
    openssl = shutil.which("openssl")
    assert openssl is not None
    files = dw.files["PACS"]
    done = subprocess.run(
        [openssl, "s_client", "-tls1_2", "-connect", f"127.0.0.1:{dw.port}",
         "-cert", str(files.cert), "-key", str(files.key), "-CAfile", str(dw.cafile)],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "protocol version" in done.stderr  # the server's alert: no session was set up
    # and the TLS 1.3 handshake works (the test can fail)
    ok = ssl.create_default_context(cafile=str(dw.cafile))
    ok.load_cert_chain(files.cert, files.key)
    with (
        socket.create_connection(("127.0.0.1", dw.port), timeout=10) as raw,
        ok.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
    _still_up(dw)


def test_plain_tcp_refused(dw: DimseWorld) -> None:
    ae = AE(ae_title="PACS")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assert _refused(ae.associate("127.0.0.1", dw.port, ae_title=AE_TITLE))
    _still_up(dw)


def test_wrong_called_ae_refused(dw: DimseWorld) -> None:
    ae = AE(ae_title="PACS")
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    files = dw.files["PACS"]
    assoc = ae.associate("127.0.0.1", dw.port, ae_title="OTHER",
                         tls_args=(dw.context(files), "localhost"))  # fmt: skip
    assert _refused(assoc)


def test_revoked_node_refused(dw: DimseWorld) -> None:
    assert dw.registry.revoke(dw.nodes["PACS"].node_id, NOW)
    assert _refused(scu(dw, "PACS"))


def test_widened_node_row_refused(dw: DimseWorld) -> None:
    """Someone with write access to the database gives the modality every scope: its row's
    tag no longer holds, the association is refused."""
    with dw.iw.engine.begin() as conn:
        conn.execute(
            update(imaging_nodes)
            .where(imaging_nodes.c.node_id == dw.nodes["MODALITY"].node_id)
            .values(scopes="query,retrieve,store")
        )
    assert _refused(scu(dw, "MODALITY"))
    _still_up(dw)


def test_scopes_limit_the_services(dw: DimseWorld) -> None:
    # no scope: only C-ECHO is offered
    assoc = scu(dw, "NOSCOPE")
    assert assoc.is_established
    assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [Verification]
    assoc.release()
    # the modality stores but does not query or retrieve
    assoc = scu(dw, "MODALITY")
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assert CTImageStorage in accepted and FIND not in accepted and GET not in accepted
    assoc.release()
    # the PACS (query, retrieve) may not store: storage contexts serve its C-GETs only
    assoc = scu(dw, "PACS")
    assert int(assoc.send_c_store(make_ct(1)[0]).Status) == 0x0124
    assoc.release()
    assert dw.iw.count("imaging_instances") == 0


def test_policy_refuses_what_scopes_allow(dw: DimseWorld) -> None:
    """A node with query and retrieve scopes, not referred to the patient: refused (0x0124),
    nothing sent; by patient id or by study UID alike."""
    slices = make_ct(2)
    assoc = scu(dw, "MODALITY")
    assert [int(assoc.send_c_store(ds).Status) for ds in slices] == [0, 0]
    assoc.release()
    dw.add_node("OUTSIDER", "query,retrieve")
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = "SYN0001"
    q.IssuerOfPatientID = "HOPITAL-NORD"
    q.StudyInstanceUID = ""
    assoc = scu(dw, "OUTSIDER")
    statuses = [(int(s.Status), i) for s, i in assoc.send_c_find(q, FIND)]
    assert [s for s, _ in statuses] == [0x0124]
    q.PatientID = ""
    q.StudyInstanceUID = str(slices[0].StudyInstanceUID)
    assert [int(s.Status) for s, _ in assoc.send_c_find(q, FIND)] == [0x0124]
    # an unknown study answers the same as a known one that is not the node's
    q.StudyInstanceUID = "1.2.3.4.5"
    assert [int(s.Status) for s, _ in assoc.send_c_find(q, FIND)] == [0x0124]
    # a query naming nobody is refused outright
    q.StudyInstanceUID = ""
    assert [int(s.Status) for s, _ in assoc.send_c_find(q, FIND)][-1] == 0xC000
    assoc.release()
    received: list[Any] = []
    assoc = get_scu(dw, "OUTSIDER", received)
    g = Dataset()
    g.QueryRetrieveLevel = "STUDY"
    g.StudyInstanceUID = str(slices[0].StudyInstanceUID)
    assert [int(s.Status) for s, _ in assoc.send_c_get(g, GET)][-1] == 0x0124
    assoc.release()
    assert received == []
    refusals = [r for r in dw.iw.audit_rows(dw.nodes["OUTSIDER"].node_id) if r["outcome"] != 0]
    assert refusals  # audited, naming the node


@pytest.mark.parametrize("level", ["PATIENT", "", "SERIES"])
def test_bad_identifiers(dw: DimseWorld, level: str) -> None:
    q = Dataset()
    q.QueryRetrieveLevel = level
    q.StudyInstanceUID = ""
    assoc = scu(dw, "PACS")
    statuses = [int(s.Status) for s, _ in assoc.send_c_find(q, FIND)]
    assert statuses[-1] in (0xA900, 0xC000)
    assoc.release()
    _still_up(dw)


def test_no_health_data_in_logs(dw: DimseWorld, caplog: pytest.LogCaptureFixture) -> None:
    """pynetdicom logs identifiers at INFO, pydicom quotes bad values: none of it reaches the
    logs, whatever the level."""
    import logging

    caplog.set_level(logging.DEBUG)
    [ds] = make_ct(1)
    ds.InstanceNumber = "1"
    assoc = scu(dw, "MODALITY")
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = "SYN0001"
    q.IssuerOfPatientID = "HOPITAL-NORD"
    q.StudyInstanceUID = ""
    q.PatientName = ""
    assoc = scu(dw, "PACS")
    assert [int(s.Status) for s, _ in assoc.send_c_find(q, FIND)][-1] == 0
    assoc.release()
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("SYN0001", "Martin", "HOPITAL-NORD"):
        assert secret not in text
