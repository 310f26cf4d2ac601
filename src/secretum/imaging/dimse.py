"""DIMSE over TLS 1.3 (pynetdicom): C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE for the
registered imaging nodes.

**Who may talk.** The port speaks TLS 1.3 only and requires a client certificate issued by
the internal CA (a TLS 1.2 client, a client without a certificate or with another CA's is cut
off in the handshake, which runs in the connection's own thread, bounded in time: a slow client
does not hold the accept loop). Then the association request: the calling AE title must be
the one registered for the presented certificate (:meth:`NodeRegistry.authenticate`), and the
called AE title ours; otherwise A-ASSOCIATE-RJ (calling AE not recognised), audited as a
Node Authentication failure. The presentation contexts offered to an accepted node follow its
scopes: storage with ``store`` (or ``retrieve``, for C-GET's sub-operations), C-FIND (Study
Root) with ``query``, C-GET and C-MOVE (Study Root) with ``retrieve``; a SOP class the archive
does not store is rejected at this step (abstract syntax not supported).

**What it may do** is then decided by the policy, through the archive's use cases (one door,
one audit entry per request): every request runs as the node's actor (``Role.IMAGING_NODE``)
for teleradiology. C-STORE goes through :meth:`ImagingArchive.ingest` (validated, encrypted,
indexed, audited; a refusal maps to its DIMSE status: 0xA700 too large, 0xA900 missing UIDs or
mismatch, 0xC000 malformed, 0x0111 the same SOP instance with other content, 0x0122, 0x0124
not authorised, 0x0110 processing failure; nothing half stored). C-FIND names a patient
(PatientID with IssuerOfPatientID) or a study (StudyInstanceUID): a node sees nothing without a
referral, so there is no "list everything" query. C-GET and C-MOVE open the study once
(:meth:`ImagingArchive.open_study`) and send its instances; a C-MOVE destination is a
registered node with a host and port, itself allowed to read the study (it receives it), and
the store association to it is TLS 1.3 with our certificate.

No web framework here; the composition root builds :class:`DicomServer` (``secretum serve``
with ``SECRETUM_DICOM_ENABLED``, or ``secretum dicom``).
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast
from weakref import WeakKeyDictionary

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, Refused
from secretum.access.guard import DEFAULT_DENY
from secretum.access.model import Purpose
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.crypto.errors import IntegrityError
from secretum.imaging.archive import ImagingArchive, StudyReader
from secretum.imaging.archive_model import (
    NOT_AUTHORIZED,
    InstanceMatch,
    InstanceStatus,
    StudyNotFound,
    StudyQuery,
)
from secretum.imaging.nodes import Node, NodeRegistry
from secretum.imaging.part10 import SUPPORTED_TRANSFER_SYNTAXES

LOG = logging.getLogger("secretum.dicom")

#: DIMSE statuses used here (PS3.4 Annex C, PS3.7 Annex C).
SUCCESS, PENDING, CANCEL = 0x0000, 0xFF00, 0xFE00
PROCESSING_FAILURE = 0x0110
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
#: Node Authentication (DICOM CID 401): the audit subtype of a refused association.
NODE_AUTHENTICATION = "110126"
#: A TLS handshake must finish within this many seconds.
HANDSHAKE_TIMEOUT = 10.0
_TELERADIOLOGY = Purpose.TELERADIOLOGY
_LEVELS = ("STUDY", "SERIES", "IMAGE")
_TS = sorted(SUPPORTED_TRANSFER_SYNTAXES)


def server_ssl_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    cafile: str | os.PathLike[str],
) -> ssl.SSLContext:
    """TLS 1.3 only, a client certificate from the internal CA (``cafile``) required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(certfile, keyfile)
    ctx.load_verify_locations(cafile=cafile)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(
    cafile: str | os.PathLike[str],
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """TLS 1.3 client (an SCU, or our C-MOVE store association): the server's certificate
    verified against ``cafile``, our certificate presented when given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


class _TLSServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake moved out of the accept loop into
    the connection's thread (bounded by :data:`HANDSHAKE_TIMEOUT`); a failed handshake (TLS
    1.2, no or a foreign certificate) closes that connection with one log line."""

    def get_request(self) -> tuple[Any, tuple[str, int]]:
        listener = cast(Any, self.socket)
        client, address = listener.accept()
        client.settimeout(HANDSHAKE_TIMEOUT)
        context = self.ssl_context
        if context is None:  # DicomServer always sets one
            raise ssl.SSLError("no TLS context")
        wrapped = context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()
            request.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            LOG.info("dicom: TLS handshake refused from %s (%s)", _host(client_address), reason)
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.warning("dicom: connection from %s ended on an error", _host(client_address))


def _host(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return "?"


def _ip(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        return None


_QR = {
    StudyRootQueryRetrieveInformationModelFind: "query",
    StudyRootQueryRetrieveInformationModelGet: "retrieve",
    StudyRootQueryRetrieveInformationModelMove: "retrieve",
}


def _allowed(context: PresentationContext, node: Node) -> bool:
    syntax = context.abstract_syntax
    if syntax == Verification:
        return True
    if syntax in _QR:
        return node.can(_QR[syntax])
    return node.can("store") or node.can("retrieve")


class DicomServer:
    """The DIMSE service of one platform (see the module docstring)."""

    def __init__(
        self,
        archive: ImagingArchive,
        nodes: NodeRegistry,
        audit: AuditLog,
        *,
        ae_title: str,
        ssl_context: ssl.SSLContext,
        move_ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_associations: int = 16,
        network_timeout: float = 60.0,
        max_pdu: int = 1024 * 1024,
    ) -> None:
        if ssl_context.minimum_version is not ssl.TLSVersion.TLSv1_3:
            raise ValueError("the DICOM port speaks TLS 1.3 only")
        if ssl_context.verify_mode is not ssl.CERT_REQUIRED:
            raise ValueError("the DICOM port requires client certificates")
        # pynetdicom logs C-FIND/C-GET identifiers (PatientID...) at INFO, pydicom quotes
        # invalid values in its warnings: neither belongs in our logs (no health data).
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        logging.getLogger("pydicom").setLevel(logging.ERROR)
        self.archive = archive
        self.nodes = nodes
        self.audit = audit
        self.ssl_context = ssl_context
        self.move_ssl_context = move_ssl_context
        self.clock = clock
        self._nodes: WeakKeyDictionary[Association, Node] = WeakKeyDictionary()
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        ae = AE(ae_title=ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = max_associations
        ae.network_timeout = network_timeout
        ae.acse_timeout = 30
        ae.dimse_timeout = network_timeout
        ae.maximum_pdu_size = max_pdu
        ae.add_supported_context(Verification)
        for uid in _QR:
            ae.add_supported_context(uid)
        # Storage, with SCP/SCU role selection accepted (C-GET: the requestor takes the SCP
        # role for the sub-operations).
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, _TS, scu_role=True, scp_role=True)
        self.ae = ae

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def ae_title(self) -> str:
        return str(self.ae.ae_title)

    def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port) in background threads; the bound port."""
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
        ]
        server = self.ae.make_server(
            (host, port),
            ssl_context=self.ssl_context,
            evt_handlers=handlers,
            server_class=_TLSServer,
        )
        self._server = cast(_TLSServer, server)
        self.ae._servers.append(server)
        self._thread = threading.Thread(
            target=server.serve_forever, name="secretum-dicom", daemon=True
        )
        self._thread.start()
        bound = int(server.server_address[1])
        LOG.info("dicom: AE %s listening on %s:%d (TLS 1.3)", self.ae_title, host, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    # -- association ----------------------------------------------------------------------------

    def _on_requested(self, event: Event) -> None:
        assoc = event.assoc
        sock = getattr(assoc.dul.socket, "socket", None)
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        calling = str(assoc.requestor.primitive.calling_ae_title or "")  # type: ignore[union-attr]
        try:
            node = self.nodes.authenticate(calling, der)
        except IntegrityError:
            LOG.error("dicom: a node row failed authentication (tampered); association refused")
            node = None
        if node is None:
            self._refused(assoc, der is not None)
            assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, user: calling AE unknown
            assoc.kill()
            return
        self._nodes[assoc] = node
        assoc.acceptor.supported_contexts = [
            cx for cx in assoc.acceptor.supported_contexts if _allowed(cx, node)
        ]

    def _refused(self, assoc: Association, had_certificate: bool) -> None:
        LOG.info("dicom: association refused from %s", assoc.requestor.address)
        try:
            self.audit.append_committed(
                AuditEvent(
                    recorded=self.clock(),
                    event_type=EventType.SECURITY_ALERT,
                    action=EventAction.EXECUTE,
                    actor_id="unknown-node",
                    actor_role="imaging-node",
                    outcome=Outcome.MINOR_FAILURE,
                    subtype=NODE_AUTHENTICATION,
                    source_address=_ip(assoc.requestor.address),
                    outcome_desc=(
                        "deny.node-ae-mismatch" if had_certificate else "deny.node-no-certificate"
                    ),
                )
            )
        except Exception as exc:
            LOG.error("dicom: the refusal could not be audited (%s)", type(exc).__name__)

    def _node(self, event: Event) -> Node:
        node = self._nodes.get(event.assoc)
        if node is None:  # unreachable: every accepted association has its node
            raise AccessDenied(DEFAULT_DENY)
        return node

    def _ctx(self, event: Event, node: Node) -> RequestContext:
        return RequestContext(
            node.actor(), _TELERADIOLOGY, self.clock(), _ip(event.assoc.requestor.address)
        )

    # -- services -------------------------------------------------------------------------------

    def _on_echo(self, event: Event) -> int:
        self._node(event)
        return SUCCESS

    def _on_store(self, event: Event) -> int:
        node = self._node(event)
        if not node.can("store"):
            return NOT_AUTHORIZED
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:
            return UNABLE_TO_PROCESS
        try:
            [result] = self.archive.ingest(self._ctx(event, node), [data])
        except Exception as exc:
            LOG.error("dicom: C-STORE failed (%s)", type(exc).__name__)
            return PROCESSING_FAILURE
        if result.status in (InstanceStatus.STORED, InstanceStatus.DUPLICATE):
            return SUCCESS
        return result.dimse_status or PROCESSING_FAILURE

    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        node = self._node(event)
        if not node.can("query"):
            yield NOT_AUTHORIZED, None
            return
        try:
            query = event.identifier
            level = str(query.get("QueryRetrieveLevel", "")).strip().upper()
        except Exception:
            yield _status(UNABLE_TO_PROCESS, "identifier cannot be decoded"), None
            return
        if level not in _LEVELS:
            yield _status(IDENTIFIER_MISMATCH, "QueryRetrieveLevel STUDY, SERIES or IMAGE"), None
            return
        ctx = self._ctx(event, node)
        try:
            matches = list(_find(self.archive, ctx, level, query))
        except _Refusal as exc:
            yield _status(exc.status, exc.comment), None
            return
        except StudyNotFound:
            matches = []
        except Refused:
            yield NOT_AUTHORIZED, None
            return
        except Exception as exc:
            LOG.error("dicom: C-FIND failed (%s)", type(exc).__name__)
            yield PROCESSING_FAILURE, None
            return
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, _answer(query, match, level)

    def _open(self, event: Event, node: Node) -> tuple[StudyReader, list[InstanceMatch]]:
        query = event.identifier
        level = str(query.get("QueryRetrieveLevel", "")).strip().upper()
        study = _single(query, "StudyInstanceUID")
        series = _single(query, "SeriesInstanceUID") if level in ("SERIES", "IMAGE") else None
        if level not in _LEVELS or study is None or (level == "SERIES" and series is None):
            raise _Refusal(IDENTIFIER_MISMATCH, "StudyInstanceUID (and SeriesInstanceUID)")
        reader = self.archive.open_study(self._ctx(event, node), study, series)
        instances = reader.instances
        if level == "IMAGE":
            wanted = set(_values(query, "SOPInstanceUID"))
            if not wanted:
                raise _Refusal(IDENTIFIER_MISMATCH, "SOPInstanceUID at the IMAGE level")
            instances = [i for i in instances if i.sop_instance_uid in wanted]
        return reader, sorted(instances, key=_order)

    def _on_get(self, event: Event) -> Iterator[Any]:
        node = self._node(event)
        failure = None
        reader: StudyReader | None = None
        instances: list[InstanceMatch] = []
        if not node.can("retrieve"):
            failure = _status(NOT_AUTHORIZED)
        else:
            try:
                reader, instances = self._open(event, node)
            except _Refusal as exc:
                failure = _status(exc.status, exc.comment)
            except (Refused, StudyNotFound):
                failure = _status(NOT_AUTHORIZED)
            except Exception as exc:
                LOG.error("dicom: C-GET failed (%s)", type(exc).__name__)
                failure = _status(PROCESSING_FAILURE)
        if failure is not None or reader is None:
            yield 1
            yield failure, None
            return
        yield len(instances)
        yield from _send(event, reader, instances)

    def _on_move(self, event: Event) -> Iterator[Any]:
        node = self._node(event)
        dest = self.nodes.by_ae_title(str(event.move_destination or ""))
        if (
            dest is None
            or dest.host is None
            or dest.port is None
            or not dest.can("retrieve")
            or self.move_ssl_context is None
        ):
            yield None, None  # 0xA801 Move destination unknown
            return
        failure = None
        reader: StudyReader | None = None
        instances: list[InstanceMatch] = []
        if not node.can("retrieve"):
            failure = _status(NOT_AUTHORIZED)
        else:
            try:
                reader, instances = self._open(event, node)
                # the destination receives the study: it must be allowed to read it too (and
                # the audit says it did: an entry in its name)
                dest_ctx = RequestContext(dest.actor(), _TELERADIOLOGY, self.clock())
                study = _single(event.identifier, "StudyInstanceUID")
                self.archive.open_study(dest_ctx, cast(str, study))
            except _Refusal as exc:
                failure = _status(exc.status, exc.comment)
            except (Refused, StudyNotFound):
                failure = _status(NOT_AUTHORIZED)
            except Exception as exc:
                LOG.error("dicom: C-MOVE failed (%s)", type(exc).__name__)
                failure = _status(PROCESSING_FAILURE)
        contexts = _move_contexts(instances)
        kwargs = {
            "ae_title": dest.ae_title,
            "tls_args": (self.move_ssl_context, dest.host),
            "contexts": contexts or [build_context(Verification)],
        }
        yield dest.host, dest.port, kwargs
        if failure is not None or reader is None:
            yield 1
            yield failure, None
            return
        yield len(instances)
        yield from _send(event, reader, instances)


class _Refusal(Exception):
    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def _status(code: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def _order(instance: InstanceMatch) -> tuple[str, int, str]:
    number = instance.instance_number if instance.instance_number is not None else 0
    return (instance.series_uid, number, instance.sop_instance_uid)


def _send(event: Event, reader: StudyReader, instances: list[InstanceMatch]) -> Iterator[Any]:
    for instance in instances:
        if event.is_cancelled:
            yield CANCEL, None
            return
        try:
            data = reader.instance_bytes(instance.sop_instance_uid)
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception as exc:
            LOG.error("dicom: an instance could not be read (%s)", type(exc).__name__)
            yield PROCESSING_FAILURE, None
            return
        yield PENDING, ds


def _move_contexts(instances: list[InstanceMatch]) -> list[PresentationContext]:
    by_class: dict[str, list[str]] = {}
    for i in instances:
        syntaxes = by_class.setdefault(i.sop_class_uid, [])
        for ts in (i.transfer_syntax_uid, ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            if ts not in syntaxes:
                syntaxes.append(ts)
    return [build_context(uid, ts) for uid, ts in list(by_class.items())[:128]]


# -- C-FIND -------------------------------------------------------------------------------------


def _values(query: Dataset, keyword: str) -> list[str]:
    if keyword not in query:
        return []
    value = query[keyword].value
    if value is None or value == "":
        return []
    many = isinstance(value, (list, tuple, pydicom.multival.MultiValue))
    items = list(value) if many else [value]
    return [str(v).strip() for v in items if str(v).strip()]


def _single(query: Dataset, keyword: str) -> str | None:
    """A single, exact value (no wildcard, no list): the UIDs that name what is asked for."""
    values = _values(query, keyword)
    if len(values) != 1 or any(c in values[0] for c in "*?"):
        return None
    return values[0]


def _date_range(query: Dataset) -> tuple[str | None, str | None]:
    values = _values(query, "StudyDate")
    if not values:
        return None, None
    value = values[0]
    if "-" not in value:
        return value, value
    low, _, high = value.partition("-")
    return low or None, high or None


def _find(
    archive: ImagingArchive, ctx: RequestContext, level: str, query: Dataset
) -> Iterator[Dataset]:
    study = _single(query, "StudyInstanceUID")
    if level == "STUDY":
        patient = _single(query, "PatientID")
        if study is None and patient is None:
            raise _Refusal(UNABLE_TO_PROCESS, "name a PatientID or a StudyInstanceUID")
        low, high = _date_range(query)
        q = StudyQuery(
            study_uid=study,
            modality=_single(query, "ModalitiesInStudy"),
            date_from=low,
            date_to=high,
            accession_number=_single(query, "AccessionNumber"),
        )
        issuer = _single(query, "IssuerOfPatientID")
        dicom_patient = (issuer, patient) if patient is not None else None
        for m in archive.search_studies(ctx, query=q, dicom_patient=dicom_patient):
            ds = Dataset.from_json(m.attributes)
            ds.ModalitiesInStudy = list(m.modalities)
            ds.NumberOfStudyRelatedSeries = m.series_count
            ds.NumberOfStudyRelatedInstances = m.instance_count
            yield ds
        return
    if study is None:
        raise _Refusal(IDENTIFIER_MISMATCH, "StudyInstanceUID is required below STUDY")
    if level == "SERIES":
        wanted = set(_values(query, "SeriesInstanceUID"))
        for s in archive.search_series(ctx, study, modality=_single(query, "Modality")):
            if wanted and s.series_uid not in wanted:
                continue
            ds = Dataset.from_json(s.attributes)
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = s.series_uid
            if s.modality:
                ds.Modality = s.modality
            ds.NumberOfSeriesRelatedInstances = s.instance_count
            yield ds
        return
    series = _single(query, "SeriesInstanceUID")
    wanted = set(_values(query, "SOPInstanceUID"))
    for i in sorted(archive.search_instances(ctx, study, series), key=_order):
        if wanted and i.sop_instance_uid not in wanted:
            continue
        ds = Dataset()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = i.series_uid
        ds.SOPInstanceUID = i.sop_instance_uid
        ds.SOPClassUID = i.sop_class_uid
        if i.instance_number is not None:
            ds.InstanceNumber = i.instance_number
        ds.NumberOfFrames = i.number_of_frames
        yield ds


_UNIQUE = {
    "STUDY": ("StudyInstanceUID",),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}


def _answer(query: Dataset, match: Dataset, level: str) -> Dataset:
    """The requested keys of ``match`` (an empty value for a key it lacks), with the level's
    unique keys and the character set (UTF-8)."""
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"
    out.QueryRetrieveLevel = level
    for elem in query:
        if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or not elem.keyword:
            continue
        if elem.tag in match:
            out[elem.tag] = match[elem.tag]
        else:
            out.add_new(elem.tag, elem.VR, None)
    for keyword in _UNIQUE[level]:
        if keyword in match:
            setattr(out, keyword, match[keyword].value)
    if "RetrieveAETitle" in query:
        out.RetrieveAETitle = ""
    return out
