"""DICOMweb of Secretum vs Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``), same files,
same run, same client.

The files: the synthetic CT of ``../shared/dicom/make_ct.py`` (373 slices of 512x512x16 bit,
about 188 MB; ``--quick``: its first 60 slices), generated into a temporary directory at bench
time, with ``IssuerOfPatientID`` added (``BENCH``) so that Secretum matches the study to its
patient (without an issuer it would wait for reconciliation); Orthanc gets the very same bytes.

The servers: Orthanc started by :mod:`bench.orthanc` (SQLite index, no compression, DICOMweb
plug-in); Secretum in a process of its own under uvicorn (h11), on an initialised platform
(SQLite, keystore, the real policy and audit), a radiologist's session (cookie, CSRF) in the
care team of a patient who consents to teleradiology. Both plain HTTP on loopback (no TLS on
either side). Figures:

* STOW-RS ingest, instances/s (``--per`` instances per request, 25 by default): Secretum
  validates, encrypts under the patient's key, indexes and audits; target >= 1.0x Orthanc.
  Each server first answers one QIDO request (its first request pays its start-up: Secretum
  builds its services then), so that the figure is the ingest's, warm.
* WADO-RS whole study, MB/s (the multipart body read to its end; Secretum decrypts as it
  streams); target >= 0.8x Orthanc. Best of three.
* One frame (``frames/1`` of a slice), p50 over 40 requests; series metadata (WADO-RS
  ``/series/{uid}/metadata``), median of 5; QIDO ``/studies?PatientID=`` p50 over 40 requests
  (Secretum: the patient's id here). For information, compared with Orthanc.
* Memory during a large ingest: the peak resident-memory growth of the Secretum server
  process while it ingests the study ``--copies`` times under fresh UIDs (6 copies = 1.1 GB;
  ``--quick``: 2 copies of the short series), sampled every 20 ms from ``/proc``. Target: flat,
  i.e. < 256 MiB whatever the volume.

The machine is shared: compare ratios of the same run, not absolute figures. Run alone:
``.venv/bin/python -m bench.bench_dicomweb [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import Figure
from bench.orthanc import free_port, orthanc_server

PASSWORD = "bench violet tractor mumbles under lanterns"
ISSUER = "BENCH"
DICOM_PID = "SYN0001"
PER_REQUEST = 25
ROOT = Path(__file__).resolve().parents[1]


def make_ct_script() -> Path:
    """``make_ct.py`` of the shared DICOM material (``../shared/dicom`` of the checkout, or
    ``SECRETUM_DICOM_SHARED``)."""
    candidates = [
        os.environ.get("SECRETUM_DICOM_SHARED", ""),
        str(ROOT.parent / "shared" / "dicom"),
        str(ROOT.parents[1] / "shared" / "dicom"),
        "/work/shared/dicom",
    ]
    for folder in candidates:
        if folder and (Path(folder) / "make_ct.py").is_file():
            return Path(folder) / "make_ct.py"
    raise FileNotFoundError("make_ct.py not found: set SECRETUM_DICOM_SHARED")


def generate_files(out: Path, slices: int) -> list[bytes]:
    """The synthetic CT (first ``slices`` slices), with IssuerOfPatientID added."""
    import pydicom

    subprocess.run([sys.executable, str(make_ct_script()), str(out)], check=True, cwd=out.parent)
    files = sorted(out.glob("*.dcm"))[:slices]
    data = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.IssuerOfPatientID = ISSUER
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data.append(buf.getvalue())
    return data


def renamed(files: list[bytes]) -> Iterator[bytes]:
    """The files again under a fresh study, series and SOP instance UIDs (one copy)."""
    import pydicom
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        yield buf.getvalue()


# -- the Secretum server (a child process) ---------------------------------------------------


def _settings(data_dir: Path) -> Any:
    from secretum.config import Settings

    return Settings(data_dir=data_dir, log_level="INFO")


def serve(data_dir: Path, port: int, passphrase: str) -> None:
    import uvicorn

    from secretum.bootstrap import open_platform
    from secretum.logs import configure_logging
    from secretum.web.app import create_app

    configure_logging("INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 (for the process)
    settings = _settings(data_dir)
    platform = open_platform(settings, passphrase=passphrase)
    app = create_app(settings, services=platform, duties=platform.duties())
    uvicorn.run(app, host="127.0.0.1", port=port, http="h11", log_config=None, access_log=False)


@dataclass(frozen=True)
class Seeded:
    session_id: str
    csrf: str
    patient_id: str


def prepare(data_dir: Path, passphrase: str) -> Seeded:
    """A platform with a radiologist (session with a fresh second factor) in the care team of
    a patient who consents to teleradiology, whose DICOM identifier is registered."""
    from secretum.access.context import RequestContext
    from secretum.access.model import Actor, Purpose, Role
    from secretum.bootstrap import init_platform
    from secretum.consent.store import ConsentMethod
    from secretum.identity.factors import time_step, totp_code
    from secretum.identity.model import luhn_ok
    from secretum.identity.service_signin import SignedIn
    from secretum.keys.keyring import utc_now

    platform = init_platform(_settings(data_dir), passphrase)
    svc, now = platform.services, utc_now()
    identity = svc.identity
    token = identity.accounts.create_setup_token(None, now)
    identity.accounts.complete_setup(
        token, email="admin@bench.invalid", display_name="Bench Admin", password=PASSWORD, now=now
    )

    def strong_session(email: str) -> str:
        signed = identity.sign_in.sign_in_password(email, PASSWORD, now=now)
        assert isinstance(signed, SignedIn)
        setup = identity.factors.begin_totp_setup(signed.session_id, now=now)
        enrolled = identity.factors.confirm_totp(
            signed.session_id, totp_code(setup.secret, time_step(now)), now=now
        )
        assert enrolled.session is not None
        return enrolled.session.session_id

    admin = strong_session("admin@bench.invalid")
    rpps = next(f"1099999000{d}" for d in range(10) if luhn_ok(f"1099999000{d}"))
    ids = {}
    for name, role, extra in (
        ("radiologist", Role.PRACTITIONER, {"specialty": "radiology", "rpps": rpps}),
        ("patient", Role.PATIENT, {}),
    ):
        invitation = identity.accounts.invite(
            admin, email=f"{name}@bench.invalid", role=role, display_name=f"Bench {name}",
            now=now, **extra,
        )  # fmt: skip
        assert invitation.token is not None
        ids[name] = identity.accounts.accept_invitation(
            invitation.token, password=PASSWORD, now=now
        )
    session_id = strong_session("radiologist@bench.invalid")
    pid = ids["patient"]
    own = RequestContext(Actor(pid, Role.PATIENT), Purpose.PATIENT_REQUEST, now)
    svc.choices.invite(own, patient_id=pid, practitioner_id=ids["radiologist"])
    svc.consent.grant(
        own, patient_id=pid, purpose=Purpose.TELERADIOLOGY,
        text_sha256=svc.consent.texts.current(Purpose.TELERADIOLOGY, "fr").sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )  # fmt: skip
    rad = RequestContext(Actor(ids["radiologist"], Role.PRACTITIONER), Purpose.TELERADIOLOGY, now)
    svc.records.create(
        rad,
        {"resourceType": "Patient", "id": pid, "name": [{"family": "Bench", "given": ["P"]}]},
        resource_id=pid,
        patient_id=pid,
    )
    svc.imaging.register_patient_identifier(rad, pid, ISSUER, DICOM_PID)
    session = svc.identity.sessions.resolve(session_id, now=now)
    assert session is not None
    platform.close()
    return Seeded(session_id, session.csrf_token, pid)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@contextmanager
def secretum_server(data_dir: Path, passphrase: str) -> Iterator[Server]:
    port = free_port()
    args = [sys.executable, "-m", "bench.bench_dicomweb", "--serve", str(data_dir), str(port)]
    env = {**os.environ, "BENCH_PASSPHRASE": passphrase}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the Secretum server exited at start-up") from None
                time.sleep(0.1)
        else:
            raise RuntimeError("the Secretum server did not start")
        yield Server(base, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the client ------------------------------------------------------------------------------


def stow(client: httpx.Client, url: str, files: Iterator[bytes] | list[bytes], per: int) -> int:
    """POST the files ``per`` a request; the number stored (every answer must be a 200)."""
    stored = 0
    batch: list[bytes] = []

    def send() -> None:
        nonlocal stored
        boundary = uuid.uuid4().hex
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + d + b"\r\n"
                for d in batch
            )
            + f"--{boundary}--\r\n".encode()
        )
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        response = client.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"STOW answered {response.status_code}: {response.text[:300]}")
        stored += len(batch)
        batch.clear()

    for data in files:
        batch.append(data)
        if len(batch) == per:
            send()
    if batch:
        send()
    return stored


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def read_all(client: httpx.Client, url: str, accept: str) -> int:
    size = 0
    with client.stream("GET", url, headers={"Accept": accept}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"GET answered {response.status_code}")
        for chunk in response.iter_raw():
            size += len(chunk)
    return size


def p50_ms(client: httpx.Client, urls: list[str], accept: str) -> float:
    times = []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url, headers={"Accept": accept})
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET answered {response.status_code}")
    return statistics.median(times)


class RssSampler:
    """Peak resident memory of a process, sampled every 20 ms in a thread."""

    def __init__(self, sample: Callable[[], int]) -> None:
        self.sample = sample
        self.peak = sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Side:
    """One server as the client sees it: its DICOMweb root and a client (with credentials)."""

    root: str
    client: httpx.Client
    patient_id: str


def measure(
    side: Side, files: list[bytes], per: int, study: str, series: str, sops: list[str]
) -> dict[str, float]:
    out: dict[str, float] = {}
    total_mb = sum(len(f) for f in files) / 1e6
    # One query first, on both sides: a server's first request pays its start-up (Secretum
    # builds its services then, hashing a dummy password), which is not STOW's throughput.
    side.client.get(
        f"{side.root}/studies?PatientID={side.patient_id}",
        headers={"Accept": "application/dicom+json"},
    ).raise_for_status()
    seconds = timed(lambda: stow(side.client, f"{side.root}/studies", files, per))
    out["stow"] = len(files) / seconds
    dicom = 'multipart/related; type="application/dicom"'
    best = min(
        timed(lambda: read_all(side.client, f"{side.root}/studies/{study}", dicom))
        for _ in range(3)
    )
    out["wado"] = total_mb / best
    frames = [
        f"{side.root}/studies/{study}/series/{series}/instances/{sop}/frames/1" for sop in sops
    ]
    octets = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    out["frame"] = p50_ms(side.client, frames, octets)
    meta = f"{side.root}/studies/{study}/series/{series}/metadata"
    out["metadata"] = 1000 * statistics.median(
        timed(
            lambda: side.client.get(
                meta, headers={"Accept": "application/dicom+json"}
            ).raise_for_status()
        )
        for _ in range(5)
    )
    qido = [f"{side.root}/studies?PatientID={side.patient_id}"] * 40
    out["qido"] = p50_ms(side.client, qido, "application/dicom+json")
    return out


def run(quick: bool = False, per: int = PER_REQUEST, copies: int | None = None) -> list[Figure]:
    import pydicom

    slices = 60 if quick else 373
    copies = copies if copies is not None else (2 if quick else 6)
    passphrase = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="secretum-bench-dicomweb-") as tmp:
        base = Path(tmp)
        files = generate_files(base / "ct", slices)
        first = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
        study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        step = max(1, len(files) // 40)
        sops = [
            str(pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID)
            for f in files[::step]
        ][:40]
        seeded = prepare(base / "data", passphrase)
        with orthanc_server() as orthanc, httpx.Client(timeout=300) as plain:
            theirs = measure(
                Side(orthanc.dicomweb, plain, DICOM_PID), files, per, study, series, sops
            )
        with (
            secretum_server(base / "data", passphrase) as server,
            httpx.Client(
                timeout=300,
                cookies={"__Host-secretum-session": seeded.session_id},
                headers={"X-CSRF-Token": seeded.csrf},
            ) as client,
        ):
            ours = measure(
                Side(f"{server.url}/dicomweb", client, seeded.patient_id),
                files,
                per,
                study,
                series,
                sops,
            )
            before = server.rss()
            with RssSampler(server.rss) as sampler:
                volume = 0
                for _ in range(copies):
                    again = list(renamed(files))
                    volume += sum(len(d) for d in again)
                    stow(client, f"{server.url}/dicomweb/studies", again, per)
            growth = (sampler.peak - before) / 2**20
    n = f"{len(files)} x {sum(len(f) for f in files) / 1e6:.0f} MB"
    return [
        Figure(
            f"STOW-RS ingest ({n}, {per}/request)",
            ours["stow"],
            "inst/s",
            "Orthanc STOW-RS",
            theirs["stow"],
            "ratio >= 1.0",
            ours["stow"] >= theirs["stow"],
        ),
        Figure(
            "WADO-RS whole study (decrypting)",
            ours["wado"],
            "MB/s",
            "Orthanc WADO-RS",
            theirs["wado"],
            "ratio >= 0.8",
            ours["wado"] >= 0.8 * theirs["wado"],
        ),
        Figure(
            "WADO-RS one frame p50",
            ours["frame"],
            "ms",
            "Orthanc",
            theirs["frame"],
            "info (lower is better)",
        ),
        Figure(
            "WADO-RS series metadata",
            ours["metadata"],
            "ms",
            "Orthanc",
            theirs["metadata"],
            "info (lower is better)",
        ),
        Figure(
            "QIDO-RS studies by PatientID p50",
            ours["qido"],
            "ms",
            "Orthanc",
            theirs["qido"],
            "info (lower is better)",
        ),
        Figure(
            f"peak RSS growth, ingest of {volume / 1e9:.2f} GB",
            growth,
            "MiB",
            target="< 256 MiB (flat)",
            passed=growth < 256,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--per", type=int, default=PER_REQUEST, help="instances per STOW request")
    parser.add_argument(
        "--copies",
        type=int,
        default=None,
        help="copies of the study ingested for the memory figure",
    )
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), os.environ["BENCH_PASSPHRASE"])
        return 0
    for fig in run(quick=args.quick, per=args.per, copies=args.copies):
        ratio = f" ratio {fig.ratio:.2f}" if fig.ratio is not None else ""
        base = f" vs {fig.baseline_value:,.1f} ({fig.baseline_name})" if fig.baseline_value else ""
        print(
            f"{fig.name}: {fig.value:,.1f} {fig.unit}{base}{ratio} [{fig.target}] ok={fig.passed}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
