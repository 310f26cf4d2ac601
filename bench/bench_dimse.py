"""Benchmark of the DIMSE server: C-STORE over TLS 1.3, one association, against Orthanc's
plain DIMSE, with the same client and the same files in the same run.

* The data: the synthetic CT of ``../shared/dicom/make_ct.py`` (373 slices of 512x512, 16-bit,
  about 188 MB), generated at bench time into a temporary directory (``quick=True`` sends
  its first 60 slices).
* Secretum: a fresh platform (``secretum init``), one imaging node registered with the
  ``store`` scope (``secretum imaging node add``, its client certificate from the internal CA),
  the DIMSE server run as ``secretum dicom`` in its own process. Every instance is validated,
  encrypted, indexed and audited (the study matches no patient here: it waits for
  reconciliation under a holding key, which costs the same as a matched one).
* Orthanc: Debian's, started by :mod:`bench.orthanc` (SQLite index, no compression), plain
  DIMSE (no TLS: the baseline the issue names).
* The client: dcmtk's ``storescu`` (C), every file in one association; the figure is
  instances per second of wall time, connection and handshake included. Target: ratio >= 3
  (issue 10, section 8). The reference run of ``../shared/dicom/README.md`` measured Orthanc
  at 15.7 instances/s.

Run alone with ``.venv/bin/python -m bench.bench_dimse [--quick]``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure
from bench.orthanc import free_port, orthanc_server

PASSPHRASE = "bench dimse lantern copper meadow whistle"
SCU_AE = "BENCHSCU"
QUICK_SLICES = 60


def shared_dicom() -> Path:
    """``../shared/dicom`` beside the repository (CI lays a copy there), or /work/shared."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (
        os.environ.get("SECRETUM_DICOM_SHARED"),
        here.parent / "shared" / "dicom",
        Path("/work/shared/dicom"),
    ):
        if candidate and (Path(candidate) / "make_ct.py").exists():
            return Path(candidate)
    raise FileNotFoundError("make_ct.py not found (set SECRETUM_DICOM_SHARED)")


def make_ct(out: Path) -> list[Path]:
    subprocess.run(
        [sys.executable, str(shared_dicom() / "make_ct.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return sorted(out.glob("*.dcm"))


def _storescu(files: list[Path], port: int, called: str, tls: list[str]) -> float:
    """Send ``files`` in one association; the wall time in seconds."""
    command = ["storescu", "-aet", SCU_AE, "-aec", called, *tls, "127.0.0.1", str(port)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *map(str, files)], capture_output=True, text=True, timeout=3600, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed: {done.stderr[-2000:]}")
    return elapsed


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("secretum dicom exited at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("secretum dicom did not listen in time")


def secretum_store(files: list[Path], base: Path) -> tuple[float, int]:
    """Seconds to C-STORE ``files`` into a fresh Secretum over TLS 1.3; instances indexed."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETUM_")}
    env.update(
        SECRETUM_DATA_DIR=str(base / "data"),
        SECRETUM_KEYSTORE_PASSPHRASE=PASSPHRASE,
        SECRETUM_CONFIG=str(base / "none.toml"),
        SECRETUM_DICOM_PORT=str(port),
        SECRETUM_LOG_LEVEL="WARNING",
        COLUMNS="200",
    )
    cli = [sys.executable, "-m", "secretum.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    certs = base / "certs"
    added = subprocess.run(
        [*cli, "imaging", "node", "add", "bench", SCU_AE, "--scopes", "store", "--out", str(certs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    found = re.search(r"registered (node-[0-9a-f]+)", added.stdout)
    if found is None:
        raise RuntimeError(f"no node registered: {added.stdout} {added.stderr}")
    node = found.group(1)
    tls = ["+tls", str(certs / f"{node}.key"), str(certs / f"{node}.pem")]
    tls += ["+cf", str(certs / "ca.pem")]
    server = subprocess.Popen(
        [*cli, "dicom"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, server)
        elapsed = _storescu(files, port, "SECRETUM", tls)
    finally:
        server.terminate()
        server.wait(30)
    with sqlite3.connect(base / "data" / "secretum.db") as db:
        stored = int(db.execute("SELECT count(*) FROM imaging_instances").fetchone()[0])
    return elapsed, stored


def orthanc_store(files: list[Path]) -> float:
    with orthanc_server() as orthanc:
        return _storescu(files, orthanc.dicom_port, orthanc.aet, [])


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("storescu") is None:
        raise FileNotFoundError("storescu missing: install the Debian package dcmtk")
    base = Path(tempfile.mkdtemp(prefix="secretum-bench-dimse-"))
    try:
        files = make_ct(base / "ct")
        if quick:
            files = files[:QUICK_SLICES]
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        orthanc_s = orthanc_store(files)
        secretum_s, stored = secretum_store(files, base)
        if stored != len(files):
            raise RuntimeError(f"Secretum indexed {stored} of {len(files)} instances")
        n = len(files)
        return [
            Figure(
                f"C-STORE TLS 1.3, 1 association, {n} CT slices ({megabytes:.0f} MB), storescu",
                n / secretum_s,
                "inst/s",
                "Orthanc plain DIMSE, same storescu and files",
                n / orthanc_s,
                "ratio >= 3",
                (n / secretum_s) >= 3 * (n / orthanc_s),
            ),
            Figure(
                "C-STORE TLS 1.3 throughput (encrypted, indexed, audited)",
                megabytes / secretum_s,
                "MB/s",
                "Orthanc plain DIMSE",
                megabytes / orthanc_s,
                "reported",
            ),
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        ratio = f" ({figure.ratio:.2f}x)" if figure.ratio is not None else ""
        print(f"{figure.name}: {figure.value:.1f} {figure.unit}{ratio} {figure.target}")
