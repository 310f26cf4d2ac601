"""The imaging-node registry and the policy's node rules (SQLite and PostgreSQL), with the real
policy: a node stores with the patient's teleradiology consent, queries and retrieves only the
studies of patients referred to it, within its scopes; nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    TR,
    ImagingWorld,
    imaging_world,
)
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Action, Actor, Facts, Purpose, Resource, Role, Sensitivity
from secretum.imaging.archive_model import InstanceStatus
from secretum.imaging.nodes import (
    Node,
    NodeError,
    NodeRegistry,
    certificate_der,
    check_ae_title,
)
from secretum.imaging.tables import imaging_nodes
from secretum.pki import (
    certificate_to_pem,
    create_root_ca,
    generate_leaf_key,
    issue_client_certificate,
)
from secretum.policy import care
from secretum.policy.care import CareBasis
from secretum.policy.decide import decide
from secretum.storage.integrity import RowTampered

CA = create_root_ca(NOW)


def _cert(name: str) -> bytes:
    key = generate_leaf_key()
    return certificate_to_pem(issue_client_certificate(CA, name, key.public_key(), NOW))


@pytest.fixture
def registry(iw: ImagingWorld) -> NodeRegistry:
    return NodeRegistry(iw.engine, iw.audit)


def _node(registry: NodeRegistry, ae: str, scopes: str = "store,query,retrieve") -> Node:
    return registry.register(f"{ae} node", ae, _cert(ae), scopes.split(","), NOW)


def _ctx(node: Node, purpose: Purpose = TR) -> RequestContext:
    return RequestContext(node.actor(), purpose, NOW)


# -- registry --------------------------------------------------------------------------------


def test_register_find_revoke(registry: NodeRegistry, iw: ImagingWorld) -> None:
    pem = _cert("ct-nord")
    node = registry.register("CT Nord", " CTNORD ", pem, ["store", "query"], NOW)
    assert node.ae_title == "CTNORD" and node.scopes == {"store", "query"} and node.active
    der = certificate_der(pem)
    assert registry.by_certificate(der) == node
    assert registry.by_ae_title("CTNORD") == node
    assert registry.authenticate("CTNORD", der) == node
    actor = node.actor()
    assert actor.role is Role.IMAGING_NODE and actor.user_id == node.node_id
    assert actor.scopes == {"store", "query"}
    assert registry.list() == [node]
    assert registry.revoke(node.node_id, NOW + timedelta(hours=1))
    assert not registry.revoke(node.node_id, NOW + timedelta(hours=2))
    assert registry.by_certificate(der) is None and registry.by_ae_title("CTNORD") is None
    assert registry.authenticate("CTNORD", der) is None
    assert registry.list() == [] and len(registry.list(include_revoked=True)) == 1
    # a revoked node's AE title and certificate are not given out again
    with pytest.raises(NodeError):
        registry.register("again", "CTNORD", _cert("x"), ["store"], NOW)
    with pytest.raises(NodeError):
        registry.register("again", "OTHER", pem, ["store"], NOW)
    codes = [(r["actor_id"], r["action"], r["resource_id"]) for r in iw.audit_rows("cli")]
    assert codes == [("cli", "C", node.node_id), ("cli", "D", node.node_id)]


def test_ae_title_and_certificate_are_bound(registry: NodeRegistry) -> None:
    pem_a, pem_b = _cert("a"), _cert("b")
    a = registry.register("A", "NODEA", pem_a, ["store"], NOW)
    b = registry.register("B", "NODEB", pem_b, ["store"], NOW)
    der_a, der_b = certificate_der(pem_a), certificate_der(pem_b)
    assert registry.authenticate("NODEA", der_a) == a
    assert registry.authenticate("NODEB", der_b) == b
    # A's certificate with B's AE title, or no certificate, or garbage: nobody
    assert registry.authenticate("NODEB", der_a) is None
    assert registry.authenticate("NODEA", None) is None
    assert registry.authenticate("NODEA", b"not a certificate") is None
    assert registry.authenticate("NODE\\A", der_a) is None


def test_duplicates_and_bad_values_refused(registry: NodeRegistry) -> None:
    pem = _cert("n1")
    registry.register("n1", "N1", pem, ["store"], NOW)
    with pytest.raises(NodeError):
        registry.register("n2", "N1", _cert("n2"), ["store"], NOW)
    with pytest.raises(NodeError):
        registry.register("n2", "N2", pem, ["store"], NOW)
    for ae in ("", "   ", "A" * 17, "BAD\\AE", "BAD\nAE", "ÉCHO"):
        with pytest.raises(NodeError):
            registry.register("n3", ae, _cert("n3"), ["store"], NOW)
    with pytest.raises(NodeError):
        registry.register("n3", "N3", _cert("n3"), ["store", "delete"], NOW)
    with pytest.raises(NodeError):
        registry.register("n3", "N3", b"-----BEGIN CERTIFICATE-----\nxx\n", ["store"], NOW)
    with pytest.raises(NodeError):
        registry.register("n3", "N3", _cert("n3"), ["store"], NOW, host="pacs", port=None)


@given(st.text(max_size=20))
def test_ae_title_rules(value: str) -> None:
    try:
        ae = check_ae_title(value)
    except NodeError:
        bad = (
            not value.isascii()
            or len(value) > 16
            or not value.strip(" ")
            or any(ord(c) < 0x20 or c in "\\\x7f" for c in value)
        )
        assert bad
    else:
        assert 1 <= len(ae) <= 16 and "\\" not in ae and ae == value.strip(" ")
        assert all(0x20 <= ord(c) < 0x7F for c in ae)


@pytest.mark.parametrize(
    "column,value",
    [("scopes", "query,retrieve,store"), ("active", True), ("ae_title", "EVIL")],
)
def test_tampered_row_refused(registry: NodeRegistry, column: str, value: object) -> None:
    """A row changed by hand in the database (more scopes, re-activated, another AE title) is
    never trusted."""
    pem = _cert("tamper")
    node = registry.register("t", "TAMPER", pem, ["store"], NOW)
    if column == "active":
        registry.revoke(node.node_id, NOW)
    with registry.engine.begin() as conn:
        conn.execute(
            update(imaging_nodes)
            .where(imaging_nodes.c.node_id == node.node_id)
            .values({column: value})
        )
    with pytest.raises(RowTampered):
        registry.by_certificate(certificate_der(pem))


# -- policy ----------------------------------------------------------------------------------


def _study_resource(patient: str | None = "pat-1") -> Resource:
    return Resource("ImagingStudy", patient, "s1")


_ALL = frozenset({"store", "query", "retrieve"})
_REFERRED = Facts(consents=frozenset({TR}), in_care_team=True)


@pytest.mark.parametrize(
    "scopes,action,facts,allowed",
    [
        (_ALL, Action.CREATE, Facts(consents=frozenset({TR})), True),
        (_ALL, Action.CREATE, Facts(), False),  # no consent
        (frozenset({"query", "retrieve"}), Action.CREATE, Facts(consents=frozenset({TR})), False),
        (_ALL, Action.SEARCH, Facts(consents=frozenset({TR})), False),  # not referred
        (_ALL, Action.SEARCH, Facts(consents=frozenset({TR}), in_care_team=True), True),
        (_ALL, Action.SEARCH, Facts(in_care_team=True), False),  # no consent
        (frozenset({"store"}), Action.SEARCH, _REFERRED, False),
        (_ALL, Action.READ, Facts(consents=frozenset({TR}), in_care_team=True), True),
        (frozenset({"query"}), Action.READ, _REFERRED, False),
        (_ALL, Action.READ, Facts(consents=frozenset({TR}), break_glass_active=True), False),
        (_ALL, Action.UPDATE, Facts(consents=frozenset({TR}), in_care_team=True), False),
        (_ALL, Action.EXPORT, Facts(consents=frozenset({TR}), in_care_team=True), False),
        (_ALL, Action.RECONCILE_IMAGING, Facts(consents=frozenset({TR}), in_care_team=True), False),
    ],
)  # fmt: skip
def test_node_rules(scopes: frozenset[str], action: Action, facts: Facts, allowed: bool) -> None:
    actor = Actor("node-1", Role.IMAGING_NODE, scopes=scopes)
    assert decide(actor, action, _study_resource(), TR, NOW, facts).allowed is allowed


def test_node_rules_refuse_everything_else() -> None:
    node = Actor("node-1", Role.IMAGING_NODE, scopes=_ALL)
    everything = Facts(consents=frozenset(Purpose), in_care_team=True, named_by_patient=True)
    for kind in ("Observation", "Practitioner", "Slot", "AuditEvent", "Account", "Patient"):
        for action in Action:
            for purpose in Purpose:
                d = decide(node, action, Resource(kind, "pat-1", "r1"), purpose, NOW, everything)
                assert not d.allowed, (kind, action, purpose)
    for purpose in set(Purpose) - {TR}:  # imaging, for another purpose
        for action in Action:
            d = decide(node, action, _study_resource(), purpose, NOW, everything)
            assert not d.allowed
    # a person's role with scopes, or a node's scopes on a practitioner: nothing more
    person = Actor("doc", Role.PRACTITIONER, scopes=_ALL)
    assert not decide(person, Action.READ, _study_resource(), TR, NOW, Facts()).allowed
    # restricted studies stay closed to nodes
    restricted = Resource("ImagingStudy", "pat-1", "s1", Sensitivity.RESTRICTED)
    facts = Facts(consents=frozenset({TR}), in_care_team=True)
    for action in (Action.CREATE, Action.SEARCH, Action.READ):
        assert not decide(node, action, restricted, TR, NOW, facts).allowed
    # unmatched studies: a store-scoped node deposits, nothing else
    unmatched = _study_resource(None)
    assert decide(node, Action.STORE_IMAGING, unmatched, TR, NOW, Facts()).allowed
    reader = Actor("node-2", Role.IMAGING_NODE, scopes=frozenset({"query", "retrieve"}))
    assert not decide(reader, Action.STORE_IMAGING, unmatched, TR, NOW, Facts()).allowed
    assert not decide(node, Action.READ, unmatched, TR, NOW, Facts()).allowed


# -- with the archive ------------------------------------------------------------------------


def test_node_stores_queries_and_reads_through_the_archive(
    iw: ImagingWorld, registry: NodeRegistry
) -> None:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    modality = _node(registry, "CTNORD", "store")
    pacs = _node(registry, "PACS", "query,retrieve")
    slices = make_ct(2)
    results = iw.archive.ingest(_ctx(modality), (to_bytes(ds) for ds in slices))
    assert [r.status for r in results] == [InstanceStatus.STORED] * 2
    study_uid = str(slices[0].StudyInstanceUID)
    # the sender does not read back what it sent; the PACS only once referred
    for node in (modality, pacs):
        with pytest.raises(AccessDenied):
            iw.archive.search_studies(_ctx(node), patient_id="pat-1")
        with pytest.raises(AccessDenied):
            iw.archive.open_study(_ctx(node), study_uid)
    with iw.engine.begin() as conn:
        rel = care.start(conn, patient_id="pat-1", practitioner_id=pacs.node_id,
                         basis=CareBasis.REFERRAL, now=NOW - timedelta(hours=1))  # fmt: skip
    [study] = iw.archive.search_studies(_ctx(pacs), patient_id="pat-1")
    assert study.study_uid == study_uid
    reader = iw.archive.open_study(_ctx(pacs), study_uid)
    assert len(reader.instances) == 2
    with pytest.raises(AccessDenied):  # not for another purpose
        iw.archive.open_study(_ctx(pacs, Purpose.RESEARCH), study_uid)
    with iw.engine.begin() as conn:
        care.end(conn, rel, NOW - timedelta(minutes=1))
    with pytest.raises(AccessDenied):
        iw.archive.open_study(_ctx(pacs), study_uid)
    # the audit names the node and the patient
    rows = iw.audit_rows(pacs.node_id)
    assert {r["actor_role"] for r in rows} == {"imaging-node"}
    assert {r["patient_id"] for r in rows} == {"pat-1"}


def test_node_not_allowed_deposits_for_reconciliation(
    iw: ImagingWorld, registry: NodeRegistry
) -> None:
    """A restricted study (no patient names a machine) is not stored under the patient's key:
    it waits for reconciliation, as a study from a sender outside the care team."""
    iw.patient("pat-2")
    iw.register("pat-2", "SYN0002")
    modality = _node(registry, "CTSUD", "store")
    data = [to_bytes(make_ct(1, patient_id="SYN0002")[0])]
    results = iw.archive.ingest(_ctx(modality), data, sensitivity=Sensitivity.RESTRICTED)
    assert results[0].status is InstanceStatus.STORED
    with iw.engine.connect() as conn:
        from secretum.imaging.tables import imaging_studies

        [row] = conn.execute(select(imaging_studies)).mappings().all()
    assert row["patient_id"] is None and row["unmatched_reason"] == "sender"
    reader = _node(registry, "READER", "query,retrieve")  # no store scope: nothing stored
    results = iw.archive.ingest(_ctx(reader), [to_bytes(make_ct(1, patient_id="SYN0002")[0])])
    assert results[0].status is InstanceStatus.FAILED
