"""Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) as the baseline peer of the imaging
benchmarks: started by the benchmark itself, in a temporary directory, on free ports.

::

    with orthanc_server() as orthanc:
        httpx.post(f"{orthanc.dicomweb}/studies", ...)      # STOW-RS, QIDO-RS, WADO-RS
        storescu 127.0.0.1 orthanc.dicom_port -aec ORTHANC   # plain DIMSE (C-STORE)

The configuration is the one of ``../shared/dicom/o.json`` (SQLite index, no compression, no
authentication, DICOMweb plug-in at ``/dicom-web/``), with its storage in the temporary
directory and ports that were free a moment before (bind port 0, read it, close). The server is
stopped (SIGTERM, then SIGKILL after a grace period) and its directory removed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORTHANC = os.environ.get("SECRETUM_ORTHANC", "/usr/sbin/Orthanc")
PLUGINS = os.environ.get("SECRETUM_ORTHANC_PLUGINS", "/usr/share/orthanc/plugins")
AE_TITLE = "ORTHANC"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its HTTP and DIMSE ports, its directory and process id."""

    http_port: int
    dicom_port: int
    directory: Path
    pid: int
    aet: str = AE_TITLE

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (no trailing slash): ``{dicomweb}/studies`` is STOW/QIDO."""
        return f"{self.url}/dicom-web"

    @property
    def storage(self) -> Path:
        return self.directory / "db"

    def rss_bytes(self) -> int:
        """Resident memory of the Orthanc process (``/proc``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def configuration(directory: Path, http_port: int, dicom_port: int) -> dict[str, Any]:
    """The configuration of ``../shared/dicom/o.json`` on these ports and this directory."""
    storage = str(directory / "db")
    return {
        "Name": "bench",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "StorageCompression": False,
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "Plugins": [PLUGINS],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpCompressionEnabled": False,
    }


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start-up (status {process.returncode})")
        try:
            with urllib.request.urlopen(f"{url}/system", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError("Orthanc did not answer in time")


@contextmanager
def orthanc_server(
    *, extra: dict[str, Any] | None = None, timeout: float = 30.0
) -> Iterator[Orthanc]:
    """Start Orthanc in a fresh temporary directory; stop it and remove the directory on exit.

    ``extra`` is merged into the configuration (e.g. ``{"DicomModalities": {...}}``)."""
    if not Path(ORTHANC).exists():
        raise FileNotFoundError(
            f"{ORTHANC} missing: install the Debian packages orthanc, orthanc-dicomweb"
        )
    directory = Path(tempfile.mkdtemp(prefix="secretum-orthanc-"))
    try:
        http_port, dicom_port = free_port(), free_port()
        while dicom_port == http_port:
            dicom_port = free_port()
        config = configuration(directory, http_port, dicom_port) | (extra or {})
        path = directory / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        log = (directory / "orthanc.log").open("wb")
        process = subprocess.Popen(
            [ORTHANC, str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
        )
        try:
            _wait_ready(f"http://127.0.0.1:{http_port}", process, timeout)
            yield Orthanc(http_port, dicom_port, directory, process.pid)
        finally:
            _stop(process)
            log.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":  # a smoke check: start, ask /system, stop
    with (
        orthanc_server() as running,
        urllib.request.urlopen(f"{running.url}/system", timeout=5) as answer,
    ):
        print(json.loads(answer.read())["Version"], running.dicomweb, running.dicom_port)
