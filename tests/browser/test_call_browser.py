"""Teleconsultation calls in real Chromium against a real ``secretum serve --dev --demo``: the
demo's general practitioner and patients, appointments booked in the agenda, the call page
(``/consult/{id}``), its signaling WebSocket, WebRTC with SFrame on every frame.

* the waiting room: the patient waits, the practitioner admits them from the lobby (keyboard);
* both sides decode each other's video for 10 s (``getStats`` inbound-rtp ``framesDecoded``
  grows), show the same safety code, and every video frame the encoder made went through the
  SFrame transform; chat and a file cross over the data channel, end to end; a file the patient
  sends is saved by the practitioner into the patient's record (and downloaded from it);
* frames captured on the wire side of the receive transform are SFrame ciphertexts that the
  Python reference (:mod:`secretum.crypto.sframe`) decrypts with the epoch's key, and only with
  it (the key is exported by the test hook, on a server in test mode only);
* a participant forced to a wrong key (test hook) decodes no frame and is warned;
* a browser without Encoded Transform is told so and does not connect.

Screenshots (waiting room and call, French and English) go to tests/browser/artifacts/call/.
The server runs with ``SECRETUM_CALL_TEST_HOOKS=1``: the page honours ``window.__secretumTest``,
which each participant's browser context sets before the page loads.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_rig import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    require_chromium,
    sign_in_demo,
    spki_hash,
    start_server,
    stop_server,
    virtual_authenticator,
)

from coturn import coturn
from secretum.crypto.errors import IntegrityError
from secretum.crypto.sframe import SFrameContext, decode_header
from secretum.demo import PEOPLE

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "call"
NAMES = {p.key: p.display_name for p in PEOPLE}
MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

# Books one video appointment per patient with the practitioner, starting in a few minutes
# (the waiting room is open), the way the agenda stores a booking (its care relationship
# opened by the policy's primitive, rows tagged). Run with the server's environment.
_BOOK = """
import json, sys
from datetime import timedelta
from secretum.agenda import store
from secretum.agenda.model import Modality
from secretum.bootstrap import open_platform
from secretum.policy.choices import open_appointment_relationship

platform = open_platform(dev=True)
now = platform.clock()
accounts = platform.services.identity.core.accounts
booked = {}
with platform.engine.begin() as conn:
    doctor = accounts.by_email(conn, sys.argv[1]).user_id
    for i, email in enumerate(sys.argv[2:]):
        patient = accounts.by_email(conn, email).user_id
        start = now + timedelta(minutes=2 + i)
        appointment_id = store.new_id()
        relationship = open_appointment_relationship(
            conn, patient_id=patient, practitioner_id=doctor, at=start, now=now,
            source_id=appointment_id)
        store.insert_appointment(
            conn, appointment_id=appointment_id, practitioner_id=doctor, patient_id=patient,
            start=start, end=start + timedelta(minutes=30), modality=Modality.VIDEO,
            purpose="teleconsultation", relationship_id=relationship, now=now)
        booked[email] = appointment_id
platform.close()
print(json.dumps(booked))
"""


def book(server: Server, practitioner: str, *patients: str) -> dict[str, str]:
    """{patient key: appointment id} for new video appointments with ``practitioner``."""
    emails = {f"{k}@{p.email.split('@')[1]}": k for p in PEOPLE for k in patients if p.key == k}
    doctor = next(p.email for p in PEOPLE if p.key == practitioner)
    out = subprocess.run(
        [sys.executable, "-c", _BOOK, doctor, *emails],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    booked: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return {emails[email]: appointment for email, appointment in booked.items()}


class Clinic:
    """The server, its appointments, and one signed-in browser context per person."""

    def __init__(self, server: Server, browser: Any) -> None:
        self.server = server
        self.browser = browser
        self.contexts: dict[str, Any] = {}
        self.appointments = book(server, "gp", "paul", "lea", "hugo")

    def context(self, key: str, lang: str, **hooks: Any) -> Any:
        """The browser context of ``key`` (signed in once), in ``lang``, with ``hooks``."""
        if key not in self.contexts:
            context = self.browser.new_context(
                locale="fr-FR", viewport={"width": 1280, "height": 900}
            )
            context.set_default_timeout(30_000)
            page = context.new_page()
            if key in ("gp", "radio"):
                virtual_authenticator(page)
            sign_in_demo(page, self.server, key)
            page.close()
            self.contexts[key] = context
        context = self.contexts[key]
        context.add_cookies([{"name": "lang", "value": lang, "url": self.server.url}])
        context.add_init_script(f"window.__secretumTest = {json.dumps(hooks)};")
        return context

    def open(self, key: str, patient: str, lang: str = "fr", **hooks: Any) -> Any:
        page = self.context(key, lang, **hooks).new_page()
        response = page.goto(f"{self.server.url}/consult/{self.appointments[patient]}")
        assert response is not None and response.status == 200
        until(page, "window.__secretumTest && window.__secretumTest.ready === true")
        return page


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    tmp = tmp_path_factory.mktemp("call")
    (tmp / "coturn").mkdir()
    with coturn(tmp / "coturn") as turn:
        settings = {
            "SECRETUM_CALL_TEST_HOOKS": "1",
            "SECRETUM_CONSULT_RECHECK_SECONDS": "1",
            "SECRETUM_TURN_URLS": json.dumps([turn.url]),
            "SECRETUM_TURN_SECRET": turn.secret,
        }
        server = start_server(tmp, "data", "--demo", settings=settings)
        # Chromium trusts the server's and coturn's certificates by their public keys.
        trusted = f"{server.spki_hash()},{spki_hash(tmp / 'coturn' / 'cert.pem')}"
        try:
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=str(CHROMIUM),
                    args=[
                        *CHROMIUM_ARGS,
                        *MEDIA_ARGS,
                        f"--ignore-certificate-errors-spki-list={trusted}",
                    ],
                )
                yield Clinic(server, browser)
                browser.close()
        finally:
            stop_server(server)


def until(page: Any, predicate: str, timeout: float = 30) -> None:
    """Poll ``predicate`` (a JS expression) until true. Not ``wait_for_function``: its
    polling evaluates strings, which the page's CSP (no 'unsafe-eval') refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({predicate})"):
        assert time.monotonic() < deadline, predicate
        time.sleep(0.2)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def admit(doctor: Any, patient_key: str) -> None:
    """The practitioner admits the patient from the lobby, with the keyboard."""
    # the row of that patient: a guest may be waiting too, listed first
    button = doctor.locator("#lobby-list li", has_text=NAMES[patient_key]).locator("button")
    button.wait_for()
    button.focus()
    doctor.keyboard.press("Enter")


def in_call(page: Any) -> str:
    """Wait for the epoch (safety code shown); the code's digits."""
    until(page, "window.__secretumTest.code !== undefined", 60)
    until(page, "/[0-9]/.test(document.getElementById('code-digits').textContent)", 30)
    digits: str = page.locator("#code-digits").inner_text().replace(" ", "")
    return digits


def stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("window.__secretumTest.stats()")
    return result


def only(peers: dict[str, Any]) -> Any:
    assert len(peers) == 1, peers
    return next(iter(peers.values()))


def decoded(page: Any) -> int:
    return int(only(stats(page)["peers"])["framesDecoded"])


def hang_up(*pages: Any) -> None:
    for page in pages:
        page.locator("#hangup").click()
        page.close()


def test_two_party_call_both_decode_and_show_the_same_code(clinic: Clinic) -> None:
    doctor = clinic.open("gp", "paul", "en")
    patient = clinic.open("paul", "paul", "fr")
    until(patient, "!document.getElementById('waiting-note').hidden")
    assert "faire entrer" in patient.locator("#stage").inner_text()
    shot(patient, "fr-patient-waiting-room")
    doctor.locator("#lobby-list button").first.wait_for()
    shot(doctor, "en-practitioner-lobby")
    admit(doctor, "paul")

    code = in_call(doctor)
    assert in_call(patient) == code and len(code) == 6
    # Both show the words of the code, each in its language, the same three things.
    words = [p.locator("#code-words").inner_text().split(" · ") for p in (doctor, patient)]
    assert [len(w) for w in words] == [3, 3] and words[0] != words[1], words  # en, fr
    assert doctor.locator("#e2ee").get_attribute("data-state") == "on"

    # Both sides decode video, and keep decoding for 10 s.
    deadline = time.monotonic() + 60
    while min(decoded(doctor), decoded(patient)) == 0:
        assert time.monotonic() < deadline, (stats(doctor), stats(patient))
        time.sleep(0.5)
    samples = []
    for _ in range(6):
        samples.append((decoded(doctor), decoded(patient)))
        time.sleep(2)
    for (d0, p0), (d1, p1) in itertools.pairwise(samples):
        assert d1 > d0 and p1 > p0, samples

    for page in (doctor, patient):
        s = stats(page)
        worker = only(s["worker"])
        assert s["code"] == code
        # Nothing failed to authenticate (Chromium may hand a frame over twice: replays).
        assert set(worker["receive"]["reasons"]) <= {"ReplayError", "UnknownKeyIdError"}, s
        assert worker["receive"]["decrypted"] > 100
        assert worker["receive"]["reasons"].get("UnknownKeyIdError", 0) < 50, s
        # Every video frame the encoder made went through the transform (none in clear).
        encoded = page.evaluate(
            """async () => (await window.__secretumTest.senders())
                 .filter((s) => s.outbound === 'video').reduce((n, s) => n + s.frames, 0)"""
        )
        assert encoded > 0 and encoded <= worker["send"]["videoFrames"] + 5, (encoded, worker)

    # Chat and a file, end to end over the data channel.
    patient.fill("#chat-text", "Bonjour docteur")
    patient.keyboard.press("Enter")
    doctor.locator("#chat-log li", has_text="Bonjour docteur").wait_for()
    payload = bytes(range(256)) * 200  # 51 kB: several chunks
    doctor.set_input_files(
        "#chat-file",
        files=[{"name": "ordonnance.pdf", "mimeType": "application/pdf", "buffer": payload}],
    )
    link = patient.locator("#chat-log a", has_text="ordonnance.pdf")
    link.wait_for()
    assert link.get_attribute("download") == "ordonnance.pdf"
    with patient.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == payload
    # The patient cannot save a file into the record: no button on their side.
    assert patient.locator("#chat-log button.save-file").count() == 0

    # A file the patient sends, saved into the record by the practitioner (decrypted in the
    # browser, encrypted again as it streams into the record), then in the patient's record.
    report = b"%PDF-1.4\n" + bytes(range(256)) * 80 + b"\n%%EOF\n"
    patient.set_input_files(
        "#chat-file",
        files=[{"name": "analyse-sang.pdf", "mimeType": "application/pdf", "buffer": report}],
    )
    received = doctor.locator("#chat-log li", has_text="analyse-sang.pdf")
    save = received.locator("button.save-file")
    save.wait_for()
    assert save.inner_text() == "Save to the record"
    shot(doctor, "en-practitioner-save-file")
    save.focus()
    doctor.keyboard.press("Enter")
    received.locator("[role=status]", has_text="Saved to the patient's record").wait_for()
    assert received.locator("button.save-file").count() == 0
    record = clinic.context("paul", "fr").new_page()
    record.goto(f"{clinic.server.url}/me/record")
    row = record.locator("tr", has_text="analyse-sang.pdf")
    row.wait_for()
    with record.expect_download() as saved:
        row.locator("a").click()
    assert Path(saved.value.path()).read_bytes() == report
    record.close()
    shot(doctor, "en-practitioner-in-call")
    shot(patient, "fr-patient-in-call")
    hang_up(patient, doctor)


def _decrypt_all(frames: list[bytes], kid: int, key: bytes) -> int:
    receiver = SFrameContext(replay_window=1024)
    receiver.add_decryption_key(kid, key)
    seen, opened = set(), 0
    for frame in frames:
        header = decode_header(frame)[:2]
        if header in seen:  # Chromium handed the same frame over twice
            continue
        seen.add(header)
        assert receiver.decrypt(b"", frame)[2]
        opened += 1
    return opened


def test_wire_frames_are_sframe_that_only_the_right_key_opens(clinic: Clinic) -> None:
    doctor = clinic.open("gp", "hugo", "fr")
    patient = clinic.open("hugo", "hugo", "en")
    until(patient, "!document.getElementById('waiting-note').hidden")
    shot(patient, "en-patient-waiting-room")
    shot(doctor, "fr-practitioner-lobby")
    admit(doctor, "hugo")
    assert in_call(doctor) == in_call(patient)
    frames = [bytes.fromhex(f) for f in doctor.evaluate("window.__secretumTest.capture(60)")]
    keys = only(doctor.evaluate("window.__secretumTest.epochKeys()"))
    theirs = only(patient.evaluate("window.__secretumTest.epochKeys()"))
    assert keys["receive_key"] == theirs["send_key"] and keys["receive_kid"] == theirs["send_kid"]
    kid, key = keys["receive_kid"], bytes.fromhex(keys["receive_key"])
    assert len(frames) == 60
    assert {decode_header(f)[0] for f in frames} == {kid}
    # every distinct frame opened (the assert inside); Chromium may hand a frame over twice
    assert _decrypt_all(frames, kid, key) >= 30
    # No other key opens them: the other direction's, or the right key under another KID.
    wrong = SFrameContext()
    wrong.add_decryption_key(kid, bytes.fromhex(keys["send_key"]))
    for frame in frames[:10]:
        with pytest.raises(IntegrityError):
            wrong.decrypt(b"", frame)
    shot(doctor, "fr-practitioner-in-call")
    shot(patient, "en-patient-in-call")
    hang_up(patient, doctor)


def test_a_participant_with_a_wrong_key_decodes_no_frame(clinic: Clinic) -> None:
    doctor = clinic.open("gp", "lea", "fr")
    patient = clinic.open("lea", "lea", "fr", wrongKey=True)
    admit(doctor, "lea")
    assert in_call(doctor) == in_call(patient)  # the public keys are honest: same code
    deadline = time.monotonic() + 60
    while decoded(doctor) < 30:  # the practitioner decodes the patient's video...
        assert time.monotonic() < deadline, stats(doctor)
        time.sleep(0.5)
    time.sleep(4)
    s = stats(patient)
    peer, worker = only(s["peers"]), only(s["worker"])
    assert peer["framesDecoded"] == 0  # ...the patient, with a wrong key, none
    assert worker["receive"]["decrypted"] == 0
    assert worker["receive"]["reasons"].get("IntegrityError", 0) > 50
    # The page says so.
    until(patient, "document.getElementById('e2ee').dataset.state === 'danger'")
    assert "déchiffré" in patient.locator("#e2ee").inner_text()
    shot(patient, "fr-patient-wrong-key")
    hang_up(patient, doctor)


def test_a_browser_without_encoded_transform_cannot_join(clinic: Clinic) -> None:
    context = clinic.context("paul", "en")
    page = context.new_page()
    page.add_init_script("delete window.RTCRtpScriptTransform;")
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{clinic.server.url}/consult/{clinic.appointments['paul']}")
    page.locator("#unsupported").wait_for()
    assert page.locator("#e2ee").get_attribute("data-state") == "danger"
    assert "cannot" in page.locator("#e2ee").inner_text()
    time.sleep(1)
    assert sockets == []  # never joined
    shot(page, "en-unsupported-browser")
    page.close()


def test_a_relay_only_call_through_coturn(clinic: Clinic) -> None:
    """Both sides force ``iceTransportPolicy: "relay"`` (test hook): media can only go through
    coturn (TURN over TLS, credentials from the server's welcome), and both decode it."""
    doctor = clinic.open("gp", "paul", "fr", relay=True)
    patient = clinic.open("paul", "paul", "fr", relay=True)
    admit(doctor, "paul")
    assert in_call(doctor) == in_call(patient)
    deadline = time.monotonic() + 60
    while min(decoded(doctor), decoded(patient)) < 30:
        assert time.monotonic() < deadline, (stats(doctor), stats(patient))
        time.sleep(0.5)
    for page in (doctor, patient):
        assert page.evaluate("window.__secretumTest.relayed()") is True
    until(patient, "!document.getElementById('quality-relay').hidden", 10)
    hang_up(patient, doctor)


def test_a_guest_the_patient_accepted_joins_a_three_party_call(clinic: Clinic) -> None:
    """Léa accepts Dr Petit (radiology: not in her care team for this call) into her
    appointment with the general practitioner on her appointments page; the practitioner
    admits both from the waiting room; the three decode each other's video and show one
    safety code (a new epoch for the third); Léa withdraws him: his call ends (re-check)."""
    patient = clinic.context("lea", "fr").new_page()
    patient.goto(f"{clinic.server.url}/me/appointments")
    row = patient.locator(
        "tr", has=patient.locator(f"a[href='/consult/{clinic.appointments['lea']}']")
    )
    row.locator("summary").click()
    row.locator("select[name=practitioner_id]").select_option(
        label=f"{NAMES['radio']} — radiologie"
    )
    shot(patient, "fr-patient-accepts-a-guest")
    row.locator("form[action$='/guests'] button").click()
    patient.wait_for_load_state()
    assert "peut maintenant rejoindre" in patient.locator("main").inner_text()
    assert NAMES["radio"] in row.inner_text()
    shot(patient, "fr-patient-guest-accepted")

    doctor = clinic.open("gp", "lea", "en")
    call = clinic.open("lea", "lea", "fr")
    guest = clinic.open("radio", "lea", "en")
    admit(doctor, "lea")
    until(guest, "!document.getElementById('waiting-note').hidden")
    doctor.locator("#lobby-list li", has_text=NAMES["radio"]).locator("button").click()
    deadline = time.monotonic() + 90
    while True:
        views = [stats(p) for p in (doctor, call, guest)]
        ready = all(
            len(v["peers"]) == 2 and all(x["framesDecoded"] > 0 for x in v["peers"].values())
            for v in views
        )
        codes = {v["code"] for v in views}
        if ready and len(codes) == 1 and None not in codes:
            break
        assert time.monotonic() < deadline, views
        time.sleep(0.5)
    before = [sum(x["framesDecoded"] for x in v["peers"].values()) for v in views]
    time.sleep(3)
    after = [
        sum(x["framesDecoded"] for x in stats(p)["peers"].values()) for p in (doctor, call, guest)
    ]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert guest.locator("#e2ee").get_attribute("data-state") in ("on", "verified")
    assert guest.locator("#lobby-list").count() == 0  # a guest admits nobody
    # each tile says who it is (the names come with "admitted" and "joined")
    captions = guest.locator("#remotes figure.remote figcaption").all_inner_texts()
    assert sorted(captions) == sorted([NAMES["gp"], NAMES["lea"]]), captions
    captions = call.locator("#remotes figure.remote figcaption").all_inner_texts()
    assert sorted(captions) == sorted([NAMES["gp"], NAMES["radio"]]), captions
    shot(guest, "en-guest-in-three-party-call")

    patient.goto(f"{clinic.server.url}/me/appointments")
    patient.locator("form[action*='/guests/'][action$='/withdraw'] button").first.click()
    patient.wait_for_load_state()
    until(guest, "document.getElementById('e2ee').dataset.state === 'ended'", 30)
    assert "withdrew" in guest.locator("#stage").inner_text()
    deadline = time.monotonic() + 30
    while len(stats(call)["peers"]) != 1:
        assert time.monotonic() < deadline, stats(call)
        time.sleep(0.5)
    patient.close()
    guest.close()
    hang_up(call, doctor)


_SOCKET = """async (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  const got = [];
  ws.onmessage = (e) => got.push(JSON.parse(e.data).type);
  ws.onclose = (e) => resolve({code: e.code, reason: e.reason, got});
})"""


@pytest.mark.parametrize("intruder", ["lea", "admin"])
def test_someone_else_is_refused_page_and_socket(clinic: Clinic, intruder: str) -> None:
    """Another signed-in patient, or the administrator, gets a refusal for the page of
    Paul's call, and their browser's socket to it is closed with 4403 before any message."""
    context = clinic.context(intruder, "fr")
    page = context.new_page()
    url = f"{clinic.server.url}/consult/{clinic.appointments['paul']}"
    response = page.goto(url)
    assert response is not None
    # A refusal page (patient), or away to the sign-in page (a role that has no calls).
    assert response.status in (403, 404) or "/consult/" not in response.url, response.url
    assert page.locator("#call").count() == 0
    ws_url = url.replace("https://", "wss://") + "/ws"
    assert page.evaluate(_SOCKET, ws_url) == {"code": 4403, "reason": "refused", "got": []}
    page.close()


def test_consent_withdrawn_during_the_call_ends_it(clinic: Clinic) -> None:
    """The patient withdraws the teleconsultation consent in another tab: the server ends
    the call (re-check every second here) and both pages say why; media stops."""
    doctor = clinic.open("gp", "hugo", "fr")
    patient = clinic.open("hugo", "hugo", "fr")
    admit(doctor, "hugo")
    assert in_call(doctor) == in_call(patient)
    consents = patient.context.new_page()
    consents.goto(clinic.server.url + "/me/consents")
    consents.locator(
        "form[action='/me/consents/withdraw']:has(input[value='teleconsultation']) button"
    ).click()
    consents.wait_for_load_state()
    until(patient, "document.getElementById('e2ee').dataset.state === 'ended'", 30)
    assert "consentement" in patient.locator("#stage").inner_text()
    until(doctor, "document.getElementById('empty-stage').hidden === false", 30)
    assert patient.locator("#hangup").is_disabled()
    shot(patient, "fr-patient-consent-withdrawn")
    doctor.close()
    patient.close()
    consents.close()
