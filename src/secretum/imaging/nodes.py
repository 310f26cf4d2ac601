"""The imaging-node registry: the machines (modalities, PACS, AI services) allowed to talk
DICOM to Secretum, over DIMSE (TLS 1.3) or DICOMweb (mutual TLS).

A node is registered by an operator (``secretum imaging node add``) with:

- a **name** (for people);
- its **AE title** (unique; DICOM PS3.5 AE rules: 1-16 characters of the default repertoire,
  no backslash, no control character, not only spaces);
- the **SHA-256 of its client certificate** (DER, unique): the certificate the internal CA
  issued it, presented in the TLS handshake. A calling AE title is only believed when it comes
  with the certificate it is bound to (:meth:`NodeRegistry.authenticate`);
- its **scopes**, a subset of ``store``, ``query``, ``retrieve`` (see
  :data:`secretum.policy.rules.NODE_SCOPES` and the ``allow.node-*`` rules there);
- optionally the **host and port** where it listens (a C-MOVE destination).

A node acts as :meth:`Node.actor`: ``Role.IMAGING_NODE`` with its scopes, its node id as user
id. The policy decides what it may do (store with the patient's teleradiology consent; query
and retrieve only the studies of patients referred to it). A revoked node stays in the table
(inactive) so that its id in the audit still names something; its certificate and AE title
cannot be registered again (a new certificate is a new registration).

Rows are tagged (:mod:`secretum.storage.integrity`): a node inserted, re-scoped, re-activated or
re-bound to another certificate by hand in the database is refused (RowTampered), never
trusted. Every change is audited (Security Alert, Security Configuration).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from secretum.access.model import Actor, Role
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.imaging.tables import imaging_nodes
from secretum.storage.integrity import RowSpec
from secretum.storage.times import utc

#: The scopes a node may hold (kept equal to ``secretum.policy.rules.NODE_SCOPES``).
SCOPES = frozenset({"store", "query", "retrieve"})
#: Security Configuration (DICOM CID 401): the audit subtype of a registry change.
SECURITY_CONFIGURATION = "110129"

#: What a node row's tag covers.
NODE_SPEC = RowSpec(
    "imaging_nodes",
    ("node_id",),
    (
        "name",
        "ae_title",
        "cert_sha256",
        "scopes",
        "host",
        "port",
        "active",
        "created_at",
        "revoked_at",
    ),
)

_AE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_HOST = re.compile(r"[A-Za-z0-9.:\-\[\]]{1,255}")


class NodeError(ValueError):
    """A registration refused: bad AE title, certificate, scopes, or already registered."""


def check_ae_title(ae_title: str) -> str:
    """The AE title, leading and trailing spaces removed (they are not significant); NodeError
    unless it is 1-16 printable ASCII characters without a backslash."""
    if not isinstance(ae_title, str) or _AE_FORBIDDEN.search(ae_title):
        raise NodeError("an AE title has no backslash and no control character")
    if not ae_title.isascii():
        raise NodeError("an AE title is ASCII (DICOM default repertoire)")
    value = ae_title.strip(" ")
    if not value or len(ae_title) > 16:
        raise NodeError("an AE title is 1 to 16 characters, not only spaces")
    return value


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(s.strip().lower() for s in scopes if s.strip())
    unknown = wanted - SCOPES
    if unknown:
        raise NodeError(f"unknown scope(s): {', '.join(sorted(unknown))} (store, query, retrieve)")
    return wanted


def certificate_der(certificate: bytes | x509.Certificate) -> bytes:
    """The DER of a certificate given as PEM, DER or a loaded certificate; NodeError if it is
    none of those."""
    if isinstance(certificate, x509.Certificate):
        from cryptography.hazmat.primitives.serialization import Encoding

        return certificate.public_bytes(Encoding.DER)
    try:
        if certificate.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(certificate)
        else:
            cert = x509.load_der_x509_certificate(certificate)
    except ValueError:
        raise NodeError("not a certificate (PEM or DER)") from None
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def fingerprint(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER: what a node is bound to."""
    return hashlib.sha256(der).digest()


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    name: str
    ae_title: str
    cert_sha256: bytes
    scopes: frozenset[str]
    host: str | None
    port: int | None
    active: bool
    created_at: datetime

    def actor(self) -> Actor:
        """Who this node is to the policy and the audit."""
        return Actor(self.node_id, Role.IMAGING_NODE, scopes=self.scopes)

    def can(self, scope: str) -> bool:
        return self.active and scope in self.scopes


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _node(conn: Connection, row: Mapping[Any, Any]) -> Node:
    NODE_SPEC.check(conn, row)
    return Node(
        node_id=row["node_id"],
        name=row["name"],
        ae_title=row["ae_title"],
        cert_sha256=bytes(row["cert_sha256"]),
        scopes=frozenset(s for s in str(row["scopes"]).split(",") if s),
        host=row["host"],
        port=row["port"],
        active=bool(row["active"]),
        created_at=_aware(row["created_at"]),
    )


class NodeRegistry:
    """Register, find, revoke and list imaging nodes (operator actions, audited)."""

    def __init__(self, engine: Engine, audit: AuditLog) -> None:
        self.engine = engine
        self.audit = audit

    def register(
        self,
        name: str,
        ae_title: str,
        certificate: bytes | x509.Certificate,
        scopes: Iterable[str],
        now: datetime,
        *,
        host: str | None = None,
        port: int | None = None,
        by: str = "cli",
        node_id: str | None = None,
    ) -> Node:
        """Register a node bound to ``certificate`` (PEM or DER); NodeError if its AE title or
        certificate is already registered (even by a revoked node), or a value is invalid."""
        if not isinstance(name, str) or not _NAME.fullmatch(name.strip() or "\x00"):
            raise NodeError("a node name is 1-128 printable characters")
        ae = check_ae_title(ae_title)
        wanted = check_scopes(scopes)
        if host is not None and not _HOST.fullmatch(host):
            raise NodeError("a host is a DNS name or an IP address")
        if port is not None and not 1 <= port <= 65535:
            raise NodeError("a port is 1-65535")
        if (host is None) != (port is None):
            raise NodeError("a host goes with a port")
        digest = fingerprint(certificate_der(certificate))
        node_id = node_id or f"node-{secrets.token_hex(8)}"
        row = {
            "node_id": node_id,
            "name": name.strip(),
            "ae_title": ae,
            "cert_sha256": digest,
            "scopes": ",".join(sorted(wanted)),
            "host": host,
            "port": port,
            "active": True,
            "created_at": utc(now),
            "revoked_at": None,
        }
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    select(imaging_nodes.c.node_id).where(
                        (imaging_nodes.c.ae_title == ae) | (imaging_nodes.c.cert_sha256 == digest)
                    )
                ).first()
                if taken is not None:
                    raise NodeError("this AE title or certificate is already registered")
                conn.execute(insert(imaging_nodes).values(**NODE_SPEC.tagged(conn, row)))
                self.audit.append(conn, self._event(node_id, EventAction.CREATE, by, now))
        except DBIntegrityError:
            raise NodeError("this AE title or certificate is already registered") from None
        with self.engine.connect() as conn:
            return _node(conn, row | {"row_mac": NODE_SPEC.tag(conn, row)})

    def revoke(self, node_id: str, now: datetime, *, by: str = "cli") -> bool:
        """Deactivate a node (its certificate and AE title are refused from now on); False if
        unknown or already revoked."""
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    select(imaging_nodes)
                    .where(imaging_nodes.c.node_id == node_id)
                    .with_for_update()
                )
                .mappings()
                .first()
            )
            if row is None or not row["active"]:
                return False
            NODE_SPEC.check(conn, row)
            values = {"active": False, "revoked_at": utc(now)}
            tag = NODE_SPEC.tag(conn, {**row, **values})
            conn.execute(
                update(imaging_nodes)
                .where(imaging_nodes.c.node_id == node_id)
                .values(**values, row_mac=tag)
            )
            self.audit.append(conn, self._event(node_id, EventAction.DELETE, by, now))
        return True

    def _find(self, condition: Any) -> Node | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(imaging_nodes).where(condition)).mappings().first()
            if row is None:
                return None
            node = _node(conn, row)
        return node if node.active else None

    def by_certificate(self, der: bytes) -> Node | None:
        """The active node bound to this certificate (DER), else None. RowTampered if its row
        was forged."""
        return self._find(imaging_nodes.c.cert_sha256 == fingerprint(der))

    def by_ae_title(self, ae_title: str) -> Node | None:
        """The active node with this AE title (spaces around it ignored), else None."""
        try:
            ae = check_ae_title(ae_title)
        except NodeError:
            return None
        return self._find(imaging_nodes.c.ae_title == ae)

    def get(self, node_id: str) -> Node | None:
        return self._find(imaging_nodes.c.node_id == node_id)

    def authenticate(self, ae_title: str, der: bytes | None) -> Node | None:
        """The active node that presented certificate ``der`` and calls itself ``ae_title``;
        None when either is unknown, or they belong to different nodes."""
        if der is None:
            return None
        node = self.by_certificate(der)
        if node is None:
            return None
        try:
            ae = check_ae_title(ae_title)
        except NodeError:
            return None
        return node if node.ae_title == ae else None

    def list(self, *, include_revoked: bool = False) -> list[Node]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(imaging_nodes).order_by(imaging_nodes.c.ae_title))
            nodes = [_node(conn, row) for row in rows.mappings()]
        return [n for n in nodes if include_revoked or n.active]

    def _event(self, node_id: str, action: EventAction, by: str, now: datetime) -> AuditEvent:
        return AuditEvent(
            recorded=utc(now),
            event_type=EventType.SECURITY_ALERT,
            action=action,
            actor_id=by,
            actor_role="admin",
            outcome=Outcome.SUCCESS,
            subtype=SECURITY_CONFIGURATION,
            resource_type="Device",
            resource_id=node_id,
            purpose="HOPERAT",
        )
