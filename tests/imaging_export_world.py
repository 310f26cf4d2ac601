"""Helpers of the de-identified export tests (imported by them; holds no test): a consent for
research, a study ingested, a tiny STOW-RS receiver on a free port."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
from pydicom.dataset import Dataset

from imaging_archive_world import NOW, SENDING, ImagingWorld
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import default_texts
from secretum.imaging.archive_model import InstanceStatus
from secretum.policy.guard import PolicyGuard


def consent_research(iw: ImagingWorld, pid: str) -> None:
    own = RequestContext(Actor(pid, Role.PATIENT), Purpose.PATIENT_REQUEST, NOW)
    ConsentService(iw.engine, iw.audit, PolicyGuard()).grant(
        own.at(NOW - timedelta(hours=1)),
        patient_id=pid,
        purpose=Purpose.RESEARCH,
        text_sha256=default_texts().current(Purpose.RESEARCH, "en").sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )


def ingest(iw: ImagingWorld, datasets: list[Dataset]) -> None:
    results = iw.archive.ingest(SENDING, (to_bytes(ds) for ds in datasets))
    assert [r.status for r in results] == [InstanceStatus.STORED] * len(datasets)


def ct_study(iw: ImagingWorld, n: int = 3, **kwargs: object) -> list[Dataset]:
    slices = make_ct(n, **kwargs)  # type: ignore[arg-type]
    ingest(iw, slices)
    return slices


def zip_datasets(data: bytes) -> tuple[dict[str, object], list[Dataset]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        datasets = [
            pydicom.dcmread(io.BytesIO(zf.read(name)))
            for name in zf.namelist()
            if name.endswith(".dcm")
        ]
    return manifest, datasets


class StowReceiver:
    """A tiny STOW-RS receiver (PS3.18 §10.5): parses multipart/related application/dicom,
    keeps the instances, answers a DICOM JSON ReferencedSOPSequence."""

    def __init__(self) -> None:
        self.received: list[Dataset] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                content_type = self.headers.get("Content-Type", "")
                receiver.content_types.append(content_type)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b"".join(_chunks(self.rfile))
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + body
                )
                refs = []
                for part in message.iter_parts():
                    ds = pydicom.dcmread(io.BytesIO(part.get_payload(decode=True)))
                    receiver.received.append(ds)
                    refs.append(
                        {
                            "00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
                            "00081155": {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]},
                        }
                    )
                answer = json.dumps({"00081199": {"vr": "SQ", "Value": refs}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicomweb/studies"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StowReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _chunks(stream: io.BufferedIOBase) -> Iterator[bytes]:
    while True:
        size = int(stream.readline().strip().split(b";")[0], 16)
        if size == 0:
            stream.readline()
            return
        yield stream.read(size)
        stream.readline()
