"""No patient data in the logs, whatever channel it comes through.

The end-to-end test runs the real HTTPS server in a subprocess and reads *everything* it writes
(stdout and stderr), so nothing escapes the capture: stdlib, structlog, uvicorn, warnings,
tracebacks printed by anything. The unit tests below check the redaction processors with
generated e-mails, NIRs and phone numbers (hypothesis).
"""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from secretum.logs import (
    REDACTED,
    REDACTED_BYTES,
    configure_logging,
    get_logger,
    redact,
    scrub,
)
from secretum.pki import create_root_ca, load_or_create_server_identity

NAME = "Jeanne Dupont-Martin"
EMAIL = "jeanne.dupont-martin@example.fr"
NIR = "284057512345678"
NIR_SPACED = "2 84 05 75 123 456 78"
DIAGNOSIS = "séropositif VIH"
PHONE = "06 12 34 56 78"

#: Patterns (on the lower-cased output) that would reveal any of the data above, in any
#: encoding we could produce: raw, JSON \\u-escaped, percent-encoded, '+' for spaces.
LEAKS = [
    re.compile(p)
    for p in (
        r"jeanne",
        r"dupont",
        r"example\.fr|example%2efr",
        r"ropositif",
        r"vih",
        r"2\D{0,3}84\D{0,3}05\D{0,3}75\D{0,3}123\D{0,3}456\D{0,3}78",
        r"06\D{0,3}12\D{0,3}34\D{0,3}56\D{0,3}78",
    )
]

SERVER_SCRIPT = r"""
import logging, sys
from fastapi import APIRouter, Request
from pydantic import BaseModel
from secretum.logs import get_logger
from secretum.web.app import create_app
from secretum.web.server import serve

router = APIRouter()
log = get_logger("test.routes")
legacy = logging.getLogger("legacy.library")

class PatientIn(BaseModel):
    name: str
    email: str
    nir: str
    birth_year: int
    note: str

@router.get("/patients/{patient_id}")
async def get_patient(patient_id: str, request: Request) -> dict:
    # careless code: personal data under deny-listed keys and as stdlib %-arguments
    log.info("patient.viewed", patient_name=patient_id, query=str(request.query_params),
             headers=dict(request.headers), cookies=request.cookies, raw=request.url.path.encode())
    legacy.warning("looked up %s (%s)", patient_id, request.query_params.get("email"))
    try:
        raise KeyError(patient_id)
    except KeyError:
        log.exception("patient.lookup_failed")
    return {"ok": True}

@router.post("/patients")
async def create_patient(patient: PatientIn) -> dict:
    log.info("patient.created", payload=patient.model_dump(), note=patient.note)
    return {"ok": True}

@router.get("/boom")
async def boom(who: str) -> dict:
    raise ValueError(f"cannot process patient {who}")

app = create_app(extra_routers=[router])
serve(app, host="127.0.0.1", port=0, certfile=sys.argv[1], keyfile=sys.argv[2],
      cafile=sys.argv[3], log_level="debug")
"""


@pytest.fixture(scope="module")
def server_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Run the server, send the data through every channel, return all it wrote."""
    tmp = tmp_path_factory.mktemp("logs")
    now = datetime.now(UTC)
    ca = create_root_ca(now)
    ident = load_or_create_server_identity(
        tmp / "pki", ca_certificate=ca.certificate, unlock_ca=lambda: ca,
        names=["localhost", "127.0.0.1"], now=now,
    )  # fmt: skip
    script = tmp / "serve_app.py"
    script.write_text(SERVER_SCRIPT)
    out_path, err_path = tmp / "stdout.log", tmp / "stderr.log"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(ident.certfile),
                str(ident.keyfile),
                str(ident.cafile),
            ],
            stdout=out,
            stderr=err,
            cwd=tmp,
        )
        try:
            port = _wait_for_port(err_path, proc)
            ctx = ssl.create_default_context(cafile=str(ident.cafile))
            _send_everything(f"https://localhost:{port}", ctx, port)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out_path.read_text("utf-8", "replace") + err_path.read_text("utf-8", "replace")


def _wait_for_port(err_path: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in err_path.read_text("utf-8", "replace").splitlines():
            if '"server.started"' in line:
                return int(json.loads(line)["port"])
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {err_path.read_text()}")
        time.sleep(0.05)  # waiting for another process to start; no logic depends on time
    raise RuntimeError("server did not start")


def _send_everything(base: str, ctx: ssl.SSLContext, port: int) -> None:
    headers = {
        "X-Patient-Name": NAME,
        "X-Diagnosis": DIAGNOSIS.encode(),
        "Authorization": f"Bearer {NIR}",
        "Cookie": f"patient={NAME.replace(' ', '_')}; nir={NIR}; mail={EMAIL}",
        "User-Agent": f"{NAME} {PHONE}",
    }
    query = {"name": NAME, "email": EMAIL, "nir": NIR_SPACED, "dx": DIAGNOSIS, "tel": PHONE}
    body = {"name": NAME, "email": EMAIL, "nir": NIR, "birth_year": 1984, "note": DIAGNOSIS}
    with httpx.Client(base_url=base, verify=ctx, headers=headers) as client:
        assert client.get(f"/patients/{NAME}", params=query).status_code == 200  # path + query
        assert client.post("/patients", json=body).status_code == 200  # JSON body
        invalid = {**body, "birth_year": f"{NAME} {NIR}"}
        assert client.post("/patients", json=invalid).status_code == 422  # validation error
        assert client.get(f"/nowhere/{NIR}/{EMAIL}", params=query).status_code == 404
        who = f"{NAME} {EMAIL} {NIR_SPACED} {DIAGNOSIS}"
        assert client.get("/boom", params={"who": who}).status_code == 500  # exception
    # An invalid HTTP request (space in the target): uvicorn's own error path.
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"GET /{NAME} {NIR} HTTP/1.1\r\nHost: {EMAIL}\r\n\r\n".encode())
        tls.recv(4096)


def _records(output: str) -> list[dict]:
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, or this raises
    assert records
    return records


def test_no_patient_data_in_any_log_line(server_output: str) -> None:
    records = _records(server_output)
    decoded = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    for text in (server_output.lower(), decoded.lower()):
        for pattern in LEAKS:
            match = pattern.search(text)
            assert match is None, f"leak: {pattern.pattern!r} near {text[max(0, match.start() - 80):match.end() + 80]!r}"  # fmt: skip  # noqa: E501


def test_request_lines_are_logged_with_route_templates(server_output: str) -> None:
    records = _records(server_output)
    requests = {
        (r.get("method"), r.get("route"), r.get("status"))
        for r in records
        if r.get("event") == "http.request"
    }
    assert ("GET", "/patients/{patient_id}", 200) in requests
    assert ("POST", "/patients", 200) in requests
    assert ("POST", "/patients", 422) in requests
    assert ("GET", None, 404) in requests
    assert ("GET", "/boom", 500) in requests
    for r in records:
        if r.get("event") == "http.request":
            assert re.fullmatch(r"[0-9a-f]{32}", r["request_id"])
            assert isinstance(r["duration_ms"], float)
            assert set(r) <= {"timestamp", "level", "logger", "event", "request_id", "method",
                              "route", "status", "duration_ms", "exc_type", "exc_stack",
                              "exc_chain"}  # fmt: skip


def test_exceptions_are_logged_by_type_and_stack(server_output: str) -> None:
    records = _records(server_output)
    boom = next(r for r in records if r.get("event") == "http.request" and r["status"] == 500)
    assert boom["level"] == "error"
    assert boom["exc_type"] == "ValueError"
    assert any(frame.endswith(" in boom") for frame in boom["exc_stack"])
    lookup = next(r for r in records if r.get("event") == "patient.lookup_failed")
    assert lookup["exc_type"] == "KeyError"
    assert lookup["request_id"]


def test_careless_logging_was_redacted_not_dropped(server_output: str) -> None:
    records = _records(server_output)
    viewed = next(r for r in records if r.get("event") == "patient.viewed")
    for key in ("patient_name", "query", "headers", "cookies"):
        assert viewed[key] == REDACTED
    assert viewed["raw"] == REDACTED_BYTES
    legacy = next(r for r in records if r.get("logger") == "legacy.library")
    assert legacy["event"] == f"looked up {REDACTED} ({REDACTED})"
    created = next(r for r in records if r.get("event") == "patient.created")
    assert created["payload"] == REDACTED and created["note"] == REDACTED


def test_uvicorn_errors_go_through_the_json_pipeline(server_output: str) -> None:
    records = _records(server_output)
    loggers = {r.get("logger") for r in records}
    assert "uvicorn.error" in loggers
    assert "uvicorn.access" not in loggers
    assert any(r.get("event") == "Invalid HTTP request received." for r in records)


# --- the processors, in process --------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("DEBUG", stream=stream, install_excepthooks=False)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def test_exception_messages_and_args_are_never_logged(captured: io.StringIO) -> None:
    try:
        try:
            raise ValueError(f"{NAME} {EMAIL}")
        except ValueError as inner:
            raise KeyError(NIR) from inner
    except KeyError as exc:
        get_logger("t.structlog").exception("lookup.failed", exc_info=exc)
        logging.getLogger("t.stdlib").exception("failed for %s", NAME)
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=exc)
    records = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert len(records) == 3
    for record in records:
        assert record["exc_type"] == "KeyError"
        assert record["exc_chain"] == ["ValueError"]
        assert any("test_logs_redaction.py" in f for f in record["exc_stack"])
    assert records[1]["event"] == f"failed for {REDACTED}"
    text = captured.getvalue().lower()
    assert not any(p.search(text) for p in LEAKS)


def test_the_listening_address_is_logged_in_clear(captured: io.StringIO) -> None:
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.info("Uvicorn running on %s://%s:%d (Press CTRL+C to quit)", "https", "127.0.0.1", 8443)
    uvicorn.info("Uvicorn running on %s://[%s]:%d (Press CTRL+C to quit)", "https", "::1", 8443)
    # The same arguments in any other template stay redacted.
    uvicorn.info("running %s://%s:%d", "https", NAME, 8443)
    events = [json.loads(line)["event"] for line in captured.getvalue().splitlines()]
    assert events == [
        "Uvicorn running on https://127.0.0.1:8443 (Press CTRL+C to quit)",
        "Uvicorn running on https://[::1]:8443 (Press CTRL+C to quit)",
        f"running {REDACTED}://{REDACTED}:8443",
    ]


def test_non_string_messages_are_not_rendered(captured: io.StringIO) -> None:
    logging.getLogger("t").error(ValueError(NAME))
    logging.getLogger("t").info({"name": NAME})
    text = captured.getvalue()
    assert "<ValueError>" in text and "<dict>" in text and "Jeanne" not in text


def _two(n: int) -> str:
    return f"{n:02d}"


separators = st.sampled_from(["", " ", ".", "-", "\u00a0", "%20"])
nirs = st.builds(
    lambda sex, yy, mm, dept, commune, order, key, sep: sep.join(
        [sex, yy, mm, dept, commune, order, key]
    ),
    st.sampled_from("12378"),
    st.integers(0, 99).map(_two),
    st.integers(1, 12).map(_two),
    st.one_of(st.integers(1, 99).map(_two), st.sampled_from(["2A", "2B"])),
    st.integers(1, 999).map(lambda n: f"{n:03d}"),
    st.integers(1, 999).map(lambda n: f"{n:03d}"),
    st.integers(1, 97).map(_two),
    separators,
)
phones = st.builds(
    lambda prefix, digits, sep: prefix + sep + sep.join(digits[i : i + 2] for i in range(0, 8, 2)),
    st.sampled_from(["06", "07", "01", "+33 6", "+33 7", "0033 1"]),
    st.text("0123456789", min_size=8, max_size=8),
    st.sampled_from(["", " ", ".", "-"]),
)
surrounding = st.text(max_size=40)


@given(prefix=surrounding, email=st.emails(), suffix=surrounding)
def test_emails_are_masked_anywhere(prefix: str, email: str, suffix: str) -> None:
    out = scrub(f"{prefix} {email} {suffix}")
    assert email not in out
    assert "@" not in out


@given(prefix=surrounding, nir=nirs, suffix=surrounding)
def test_nirs_are_masked_anywhere(prefix: str, nir: str, suffix: str) -> None:
    out = scrub(f"{prefix} {nir} {suffix}")
    assert nir not in out
    assert re.sub(r"\D", "", nir) not in out


@given(prefix=surrounding, phone=phones, suffix=surrounding)
def test_phone_numbers_are_masked_anywhere(prefix: str, phone: str, suffix: str) -> None:
    out = scrub(f"{prefix} {phone} {suffix}")
    assert phone not in out


@given(email=st.emails(), nir=nirs, blob=st.binary(min_size=1))
def test_processor_scrubs_nested_values_and_bytes(email: str, nir: str, blob: bytes) -> None:
    event = {
        "event": f"sent to {email}",
        "detail": {"items": [f"nir {nir}", (email,)], "count": 3},
        "blob": blob,
        "status": 200,
        "route": "/patients/{patient_id}",
    }
    out = redact(None, "info", event)
    rendered = json.dumps(out, ensure_ascii=False)
    assert email not in rendered and nir not in rendered
    assert out["blob"] == REDACTED_BYTES
    assert out["status"] == 200 and out["route"] == "/patients/{patient_id}"
    assert out["detail"]["count"] == 3


@given(
    key=st.sampled_from(
        ["password", "patient_name", "firstName", "email", "Authorization", "nir", "ins",
         "note", "birth_date", "x-api-key", "accessToken", "cookie", "body", "content",
         "value", "passphrase", "secret", "token", "phone", "address", "text", "lastName"]
    ),
    value=st.one_of(st.text(), st.integers(), st.lists(st.text())),
)  # fmt: skip
def test_deny_listed_keys_are_masked(key: str, value: object) -> None:
    out = redact(None, "info", {"event": "e", key: value, "nested": {key: value}})
    assert out[key] == REDACTED
    assert out["nested"][key] == REDACTED


def test_innocent_fields_are_kept() -> None:
    event = {"event": "audit.checkpoint", "tree_size": 1024, "method": "GET", "host": "::1"}
    assert redact(None, "info", dict(event)) == event
