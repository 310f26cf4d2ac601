"""Call media: what end-to-end encryption (SFrame in the Encoded Transform worker) costs a call.

Two RTCPeerConnections in one real Chromium page (system ``/usr/bin/chromium``, Playwright),
the same fake camera stream (``--use-fake-device-for-media-stream``, asked for 1280x720 at
30 fps; Chromium's fake camera gives 20 fps), VP8 kept at 720p (the bandwidth estimate starts
high on loopback), video only:

* **plain** (baseline): no transform, DTLS-SRTP alone;
* **e2ee**: every frame through ``static/sframe-worker.js`` on both sides (AES_256_GCM_SHA512_128,
  keys installed before media flows), exactly as the call page does.

Figures: frames decoded per second by the receiver, e2ee vs plain (target ratio >= 0.95,
measured alternately in the same browser, after a warm-up), and the worker's cost per video
frame (µs of SFrame work per frame, sender and receiver) with the frames' resolution and mean
size. The page and the worker are served from ``src/secretum/web/static`` by a plain HTTP server
on localhost (a secure context for Chromium), no Secretum server needed.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Figure

CHROMIUM = Path("/usr/bin/chromium")
STATIC = Path(__file__).resolve().parent.parent / "src" / "secretum" / "web" / "static"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]

# One run: a call of `seconds` after `warmup`, with or without the transforms.
_RUN = r"""async ([e2ee, warmup, seconds]) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let nextId = 0;
  const ask = (worker, message) => new Promise((resolve, reject) => {
    const id = ++nextId;
    const listener = (e) => {
      if (e.data.id !== id) return;
      worker.removeEventListener('message', listener);
      if (e.data.type === 'error') reject(new Error(e.data.error)); else resolve(e.data);
    };
    worker.addEventListener('message', listener);
    worker.postMessage({...message, id});
  });
  const media = await navigator.mediaDevices.getUserMedia(
    {video: {width: 1280, height: 720, frameRate: 30}});
  const [track] = media.getVideoTracks();
  const pc1 = new RTCPeerConnection(), pc2 = new RTCPeerConnection();
  pc1.onicecandidate = (e) => e.candidate && pc2.addIceCandidate(e.candidate);
  pc2.onicecandidate = (e) => e.candidate && pc1.addIceCandidate(e.candidate);
  let alice = null, bob = null;
  if (e2ee) {
    alice = new Worker('/sframe-worker.js', {type: 'module'});
    bob = new Worker('/sframe-worker.js', {type: 'module'});
    const key = crypto.getRandomValues(new Uint8Array(32));
    await ask(bob, {type: 'addDecryptionKey', peer: 'a', kid: 7, baseKey: key});
    await ask(alice, {type: 'addEncryptionKey', peer: 'b', kid: 7, baseKey: key});
    await ask(alice, {type: 'useKid', peer: 'b', kid: 7});
  }
  const transceiver = pc1.addTransceiver(track, {direction: 'sendonly', streams: [media]});
  if (e2ee) {
    transceiver.sender.transform = new RTCRtpScriptTransform(alice, {side: 'send', peer: 'b'});
  }
  const vp8 = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => /VP8/i.test(c.mimeType));
  transceiver.setCodecPreferences(vp8);
  let receiver = null;
  pc2.ontrack = (e) => {
    receiver = e.receiver;
    if (e2ee) e.receiver.transform = new RTCRtpScriptTransform(bob, {side: 'receive', peer: 'a'});
  };
  // Loopback has bandwidth to spare: start the estimate high (720p from the first second) and
  // keep the resolution, so that both runs encode the same 720p frames.
  const params = transceiver.sender.getParameters();
  params.degradationPreference = 'maintain-resolution';
  params.encodings[0].maxBitrate = 4000000;
  await transceiver.sender.setParameters(params);
  await pc1.setLocalDescription();
  await pc2.setRemoteDescription(pc1.localDescription);
  await pc2.setLocalDescription();
  const pt = /a=rtpmap:(\d+) VP8\/90000/.exec(pc2.localDescription.sdp)[1];
  const rate = 'x-google-start-bitrate=3000;x-google-min-bitrate=2000;x-google-max-bitrate=4000';
  const sdp = pc2.localDescription.sdp.replace(`a=rtpmap:${pt} VP8/90000\r\n`,
    `a=rtpmap:${pt} VP8/90000\r\na=fmtp:${pt} ${rate}\r\n`);
  await pc1.setRemoteDescription({type: 'answer', sdp});
  const inbound = async () => {
    let out = null;
    (await receiver.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') out = s; });
    return out;
  };
  await sleep(warmup * 1000);
  const before = await inbound(), t0 = performance.now();
  const sentBefore = e2ee ? (await ask(alice, {type: 'stats'})).peers.b.send : null;
  const gotBefore = e2ee ? (await ask(bob, {type: 'stats'})).peers.a.receive : null;
  await sleep(seconds * 1000);
  const after = await inbound(), elapsed = (performance.now() - t0) / 1000;
  const result = {
    fps: (after.framesDecoded - before.framesDecoded) / elapsed,
    width: after.frameWidth, height: after.frameHeight,
    capture: track.getSettings(),
  };
  if (e2ee) {
    const sent = (await ask(alice, {type: 'stats'})).peers.b.send;
    const got = (await ask(bob, {type: 'stats'})).peers.a.receive;
    const frames = sent.encrypted - sentBefore.encrypted;
    result.sendUs = (sent.busyUs - sentBefore.busyUs) / frames;
    result.bytes = (sent.bytes - sentBefore.bytes) / frames;
    result.receiveUs = (got.busyUs - gotBefore.busyUs) / (got.decrypted - gotBefore.decrypted);
    result.dropped = got.dropped - gotBefore.dropped;
    alice.terminate(); bob.terminate();
  }
  pc1.close(); pc2.close(); track.stop();
  return result;
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_server() -> Iterator[str]:
    """``src/secretum/web/static`` over HTTP on localhost (a secure context for Chromium)."""
    handler = functools.partial(_Quiet, directory=str(STATIC))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def measure(quick: bool) -> dict[str, Any]:
    """Alternate plain and e2ee runs; the mean fps of each and the worker's costs."""
    from playwright.sync_api import sync_playwright

    warmup, seconds, rounds = (3, 5, 1) if quick else (4, 15, 2)
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    with static_server() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(120_000)
            page.goto(url + "/favicon.svg")
            for _ in range(rounds):
                for e2ee in (False, True):
                    runs[e2ee].append(page.evaluate(_RUN, [e2ee, warmup, seconds]))
        finally:
            browser.close()
    e2ee_runs = runs[True]
    return {
        "plain_fps": sum(r["fps"] for r in runs[False]) / rounds,
        "e2ee_fps": sum(r["fps"] for r in e2ee_runs) / rounds,
        "send_us": sum(r["sendUs"] for r in e2ee_runs) / rounds,
        "receive_us": sum(r["receiveUs"] for r in e2ee_runs) / rounds,
        "bytes": sum(r["bytes"] for r in e2ee_runs) / rounds,
        "size": f"{e2ee_runs[-1]['width']}x{e2ee_runs[-1]['height']}",
        "capture": e2ee_runs[-1]["capture"],
    }


def run(quick: bool = False) -> list[Figure]:
    m = measure(quick)
    size = f"{m['size']}, {m['bytes'] / 1000:.1f} kB/frame"
    capture = m["capture"]
    camera = f"{capture['width']}x{capture['height']} at {capture['frameRate']:g} fps"
    return [
        Figure(
            name=f"call frames decoded per second, SFrame E2EE (2 peers, fake camera {camera})",
            value=m["e2ee_fps"],
            unit="frames/s",
            baseline_name="same call without the transforms",
            baseline_value=m["plain_fps"],
            target="ratio >= 0.95",
            passed=m["e2ee_fps"] >= 0.95 * m["plain_fps"],
        ),
        Figure(
            name=f"SFrame worker cost per video frame, sender ({size})",
            value=m["send_us"],
            unit="µs/frame",
            target="information (33,333 µs = one frame at 30 fps)",
        ),
        Figure(
            name=f"SFrame worker cost per video frame, receiver ({size})",
            value=m["receive_us"],
            unit="µs/frame",
            target="information",
        ),
    ]


if __name__ == "__main__":
    print(measure(quick=True))
