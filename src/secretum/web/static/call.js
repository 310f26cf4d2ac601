// The teleconsultation page (consult_call.html): waiting room, WebRTC peer to peer, SFrame on
// every encoded frame in a Worker (sframe-worker.js through RTCRtpScriptTransform), keys by
// call-keys.js, chat and files by call-chat.js over a data channel. Signaling: the call
// protocol (docs/call-protocol.md). No frame leaves in clear: a browser without Encoded
// Transform cannot join, and until a key is in use the worker drops every outgoing frame.

import { CallKeys } from "./call-keys.js";
import { codeWords } from "./call-words.js";
import { ChatOpener, ChatSealer, CHUNK, MAX_FILE, MAX_TEXT, decode, encodeChunk, encodeJson } from "./call-chat.js";

const root = document.getElementById("call");
const S = JSON.parse(document.getElementById("call-strings").textContent);
const lang = document.documentElement.lang === "en" ? "en" : "fr";
const $ = (id) => document.getElementById(id);
// Test hooks (wrong key, relay only, frame capture, key export): only on a server started in
// test mode (data-test-hooks="1"), and only when the test put window.__secretumTest there.
const test = root.dataset.testHooks === "1" && typeof window.__secretumTest === "object" ? window.__secretumTest : null;

const OLD_KEY_GRACE_MS = 5000;
const state = {
  ws: null, me: null, role: root.dataset.role, iceServers: [], admitted: false, ended: false,
  local: null, peers: new Map(), worker: null, keys: null, epoch: null, verified: null,
  audioOn: true, videoOn: true, nextId: 0, pending: new Map(),
};

// ------------------------------------------------------------------------------ status

function setE2ee(kind, text) {
  const box = $("e2ee");
  box.dataset.state = kind;
  $("e2ee-text").textContent = text;
}

function setStage(text) { $("stage").textContent = text; }

function showCode(code) {
  $("code-digits").textContent = code ? `${code.slice(0, 3)} ${code.slice(3)}` : "— — —";
  $("code-words").textContent = code ? codeWords(code, lang).join(" · ") : "";
  $("code-box").hidden = !code;
  $("code-pending").hidden = !!code;
  $("code-result").textContent = "";
}

function warn(text) {
  state.warning = true;
  setE2ee("danger", text);
}

// ------------------------------------------------------------------------------ worker

function ask(message) {
  return new Promise((resolve, reject) => {
    const id = ++state.nextId;
    state.pending.set(id, { resolve, reject });
    state.worker.postMessage({ ...message, id });
  });
}

function startWorker() {
  state.worker = new Worker(root.dataset.worker, { type: "module" });
  state.worker.onmessage = (e) => {
    const waiting = state.pending.get(e.data.id);
    if (!waiting) return;
    state.pending.delete(e.data.id);
    if (e.data.type === "error") waiting.reject(new Error(e.data.error));
    else waiting.resolve(e.data);
  };
}

// ------------------------------------------------------------------------------ media

async function openMedia(audioId, videoId) {
  const constraints = {
    audio: audioId ? { deviceId: { exact: audioId } } : true,
    video: { ...(videoId ? { deviceId: { exact: videoId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
  };
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch {
    try { return await navigator.mediaDevices.getUserMedia({ audio: true }); } catch { return new MediaStream(); }
  }
}

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [select, kind, track] of [["mic", "audioinput", "audio"], ["cam", "videoinput", "video"]]) {
    const el = $(select);
    const current = state.local.getTracks().find((t) => t.kind === track)?.getSettings().deviceId;
    el.replaceChildren();
    devices.filter((d) => d.kind === kind).forEach((d, i) => {
      const option = new Option(d.label || `${S[`device_${track}`]} ${i + 1}`, d.deviceId);
      option.selected = d.deviceId === current;
      el.append(option);
    });
    el.disabled = el.options.length === 0;
  }
}

async function switchDevice(kind) {
  const id = $(kind === "audio" ? "mic" : "cam").value;
  const fresh = await openMedia(kind === "audio" ? id : null, kind === "video" ? id : null);
  const track = fresh.getTracks().find((t) => t.kind === kind);
  fresh.getTracks().filter((t) => t !== track).forEach((t) => t.stop());
  if (!track) return;
  track.enabled = kind === "audio" ? state.audioOn : state.videoOn;
  const old = state.local.getTracks().find((t) => t.kind === kind);
  if (old) { state.local.removeTrack(old); old.stop(); }
  state.local.addTrack(track);
  for (const peer of state.peers.values()) {
    for (const t of peer.pc.getTransceivers()) if (t.receiver.track.kind === kind) await t.sender.replaceTrack(track);
  }
  $("local-video").srcObject = state.local;
}

function toggle(kind) {
  const on = kind === "audio" ? (state.audioOn = !state.audioOn) : (state.videoOn = !state.videoOn);
  state.local.getTracks().filter((t) => t.kind === kind).forEach((t) => { t.enabled = on; });
  const button = $(kind === "audio" ? "mute" : "camera");
  button.setAttribute("aria-pressed", String(!on));
  button.textContent = kind === "audio" ? (on ? S.mute : S.unmute) : (on ? S.camera_off : S.camera_on);
}

// ------------------------------------------------------------------------------ peers

function remoteTile(pid, name) {
  const figure = document.createElement("figure");
  figure.className = "tile remote";
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute("aria-label", S.remote_video);
  const caption = document.createElement("figcaption");
  caption.textContent = name || root.dataset.otherName;
  figure.append(video, caption);
  $("remotes").append(figure);
  $("empty-stage").hidden = true;
  return { figure, video, stream: new MediaStream() };
}

function attachReceive(peer, transceiver) {
  if (transceiver.receiver.transform) return;
  transceiver.receiver.transform = new RTCRtpScriptTransform(state.worker, { side: "receive", peer: peer.pid });
}

function preferCodecs(transceiver) {
  // SFrame makes the frame opaque: H.264's packetizer reads NAL units, so VP8/VP9 go first.
  if (transceiver.receiver.track.kind !== "video" || !transceiver.setCodecPreferences) return;
  const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs ?? [];
  const rank = (c) => (/VP8/i.test(c.mimeType) ? 0 : /VP9/i.test(c.mimeType) ? 1 : /H264/i.test(c.mimeType) ? 3 : 2);
  transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
}

function addPeer(pid, offerer, name) {
  if (state.peers.has(pid)) return state.peers.get(pid);
  const pc = new RTCPeerConnection({ iceServers: state.iceServers, iceTransportPolicy: test?.relay ? "relay" : "all" });
  const channel = pc.createDataChannel("secretum-chat", { negotiated: true, id: 0, ordered: true });
  channel.binaryType = "arraybuffer";
  const shown = typeof name === "string" && name ? name.slice(0, 200) : root.dataset.otherName;
  const peer = { pid, pc, channel, offerer, name: shown, tile: remoteTile(pid, shown), candidates: [], sealer: null, opener: new ChatOpener(), files: new Map(), kids: null, oldKids: [] };
  state.peers.set(pid, peer);
  pc.onicecandidate = (e) => signal(pid, { candidate: e.candidate ? e.candidate.toJSON() : null });
  pc.ontrack = (e) => {
    attachReceive(peer, e.transceiver);
    peer.tile.stream.addTrack(e.track);
    peer.tile.video.srcObject = peer.tile.stream;
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") setStage(S.connection_failed);
  };
  channel.onmessage = (e) => receiveChat(peer, e.data).catch(() => chatNotice(S.chat_refused));
  channel.onopen = () => updateChatState();
  channel.onclose = () => updateChatState();
  if (offerer) {
    for (const kind of ["audio", "video"]) {
      const track = state.local.getTracks().find((t) => t.kind === kind);
      const transceiver = pc.addTransceiver(track ?? kind, { direction: "sendrecv", streams: [state.local] });
      transceiver.sender.transform = new RTCRtpScriptTransform(state.worker, { side: "send", peer: pid });
      attachReceive(peer, transceiver);
      preferCodecs(transceiver);
    }
    negotiate(peer).catch(() => setStage(S.connection_failed));
  } else {
    // The answering side adds its tracks now, with their transforms, so that the offer's
    // m-lines take these senders. Chromium (156) does not run a transform set on a sender
    // that the remote offer created (its frames would leave in clear): tests check that the
    // other side decrypts every frame it receives.
    for (const track of state.local.getTracks()) {
      const sender = pc.addTrack(track, state.local);
      sender.transform = new RTCRtpScriptTransform(state.worker, { side: "send", peer: pid });
      attachReceive(peer, pc.getTransceivers().find((t) => t.sender === sender));
    }
  }
  return peer;
}

async function negotiate(peer) {
  await peer.pc.setLocalDescription();
  signal(peer.pid, { description: { type: peer.pc.localDescription.type, sdp: peer.pc.localDescription.sdp } });
}

async function onSignal(from, data) {
  const peer = state.peers.get(from) ?? addPeer(from, false);
  const pc = peer.pc;
  if (data.description) {
    await pc.setRemoteDescription(data.description);
    if (data.description.type === "offer") {
      for (const transceiver of pc.getTransceivers()) {
        const kind = transceiver.receiver.track.kind;
        const track = state.local.getTracks().find((t) => t.kind === kind) ?? null;
        if (!transceiver.sender.transform) {
          // Only for a kind this side has no track of (the others were added with theirs).
          transceiver.sender.transform = new RTCRtpScriptTransform(state.worker, { side: "send", peer: from });
        }
        if (track && !transceiver.sender.track) await transceiver.sender.replaceTrack(track);
        attachReceive(peer, transceiver);
        preferCodecs(transceiver);
      }
      await negotiate(peer);
    }
    for (const c of peer.candidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
  } else if ("candidate" in data) {
    if (!pc.remoteDescription) peer.candidates.push(data.candidate ?? undefined);
    else await pc.addIceCandidate(data.candidate ?? undefined).catch(() => {});
  }
}

function removePeer(pid) {
  const peer = state.peers.get(pid);
  if (!peer) return;
  peer.pc.close();
  peer.tile.figure.remove();
  state.peers.delete(pid);
  state.worker.postMessage({ type: "forget", peer: pid });
  if (state.peers.size === 0) {
    $("empty-stage").hidden = false;
    showCode(null);
    state.epoch = null;
    if (!state.ended) { setStage(S.other_left); setE2ee("waiting", S.e2ee_ready); }
  }
  updateChatState();
}

// ------------------------------------------------------------------------------ keys

function rosterChanged() {
  const peers = [...state.peers.keys()];
  if (peers.length > 0 && !state.warning) setE2ee("keying", S.e2ee_keying);
  state.keys.setRoster(peers);
}

async function onEpoch(epoch) {
  state.epoch = epoch;
  const installs = [];
  for (const [pid, keys] of epoch.peers) {
    const peer = state.peers.get(pid);
    if (!peer) continue;
    installs.push((async () => {
      await ask({ type: "addDecryptionKey", peer: pid, kid: keys.kids.receive, baseKey: keys.receiveKey });
      await ask({ type: "addEncryptionKey", peer: pid, kid: keys.kids.send, baseKey: keys.sendKey });
      peer.opener.add(keys.kids.receive, keys.chatReceive);
      const previous = peer.kids;
      peer.kids = keys.kids;
      peer.sealer = new ChatSealer(keys.kids.send, keys.chatSend);
      // The other side installs its keys at about the same moment; a frame sent under a KID
      // it does not know yet is dropped there, and the worker asks for a key frame at once.
      setTimeout(() => state.worker.postMessage({ type: "useKid", peer: pid, kid: keys.kids.send }), 300);
      if (previous) {
        setTimeout(() => {
          for (const kid of [previous.send, previous.receive]) state.worker.postMessage({ type: "removeKey", peer: pid, kid });
          peer.opener.remove(previous.receive);
        }, OLD_KEY_GRACE_MS);
      }
    })());
  }
  await Promise.all(installs);
  showCode(epoch.code);
  state.verified = null;
  if (!state.warning) setE2ee("on", S.e2ee_on);
  setStage("");
  updateChatState();
  if (test) test.code = epoch.code;
}

function onKeyFailure(reason) {
  warn(reason === "mismatch" ? S.e2ee_mismatch : S.e2ee_failed);
}

// ------------------------------------------------------------------------------ chat and files

function chatNotice(text) {
  const item = document.createElement("li");
  item.className = "notice";
  item.textContent = text;
  $("chat-log").append(item);
}

function chatLine(who, ...nodes) {
  const item = document.createElement("li");
  const name = document.createElement("strong");
  name.textContent = `${who} `;
  item.append(name, ...nodes);
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function updateChatState() {
  const ready = [...state.peers.values()].some((p) => p.sealer && p.channel.readyState === "open");
  $("chat-text").disabled = !ready;
  $("chat-send").disabled = !ready;
  $("chat-file").disabled = !ready;
}

async function sendToAll(plaintext) {
  for (const peer of state.peers.values()) {
    if (!peer.sealer || peer.channel.readyState !== "open") continue;
    while (peer.channel.bufferedAmount > 1024 * 1024) await new Promise((r) => setTimeout(r, 20));
    peer.channel.send(await peer.sealer.seal(plaintext));
  }
}

async function sendText(text) {
  const body = text.trim().slice(0, MAX_TEXT);
  if (!body) return;
  await sendToAll(encodeJson({ t: "text", body }));
  chatLine(S.you, document.createTextNode(body));
}

async function sendFile(file) {
  if (file.size > MAX_FILE) { chatNotice(S.file_too_big); return; }
  const id = globalThis.crypto.getRandomValues(new Uint8Array(16));
  const chunks = Math.ceil(file.size / CHUNK);
  await sendToAll(encodeJson({ t: "file", id: Array.from(id, (b) => b.toString(16).padStart(2, "0")).join(""), name: file.name.slice(0, 200), size: file.size, chunks }));
  const bytes = new Uint8Array(await file.arrayBuffer());
  for (let i = 0; i < chunks; i++) await sendToAll(encodeChunk(id, i, bytes.subarray(i * CHUNK, (i + 1) * CHUNK)));
  chatLine(S.you, document.createTextNode(`${S.file_sent} ${file.name}`));
}

function fileLink(name, parts) {
  // Served as bytes to save, never rendered: a blob URL is of this origin, so an HTML file
  // opened from it could run here.
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
  link.download = name;
  link.textContent = `${S.file_received} ${name}`;
  return link;
}

async function receiveChat(peer, data) {
  const message = decode(await peer.opener.open(data));
  if (message.kind === "json" && message.value.t === "text") {
    chatLine(peer.name, document.createTextNode(String(message.value.body).slice(0, MAX_TEXT)));
  } else if (message.kind === "json" && message.value.t === "file") {
    const { id, name, size, chunks } = message.value;
    if (typeof id !== "string" || !(size <= MAX_FILE) || !(chunks === Math.ceil(size / CHUNK))) throw new Error("bad file");
    peer.files.set(id, { name: String(name).slice(0, 200), size, chunks, parts: [], got: 0 });
    if (chunks === 0) finishFile(peer, id);
  } else if (message.kind === "chunk") {
    const file = peer.files.get(message.id);
    if (!file || message.index !== file.parts.length) throw new Error("chunk out of order");
    file.parts.push(message.bytes);
    file.got += message.bytes.length;
    if (file.got > file.size) throw new Error("file too long");
    if (file.parts.length === file.chunks) finishFile(peer, message.id);
  }
}

function finishFile(peer, id) {
  const file = peer.files.get(id);
  peer.files.delete(id);
  if (file.got !== file.size) { chatNotice(S.chat_refused); return; }
  const line = [fileLink(file.name, file.parts)];
  if (state.role === "practitioner") line.push(" ", saveButton(file.name, file.parts));
  chatLine(peer.name, ...line);
}

// The record takes these types (the server checks the first bytes against the type).
const RECORD_TYPES = { pdf: "application/pdf", png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", dcm: "application/dicom", txt: "text/plain" };

/** The practitioner's "Save to the record" button of a received file: the decrypted bytes go
 *  to POST /consult/{id}/documents (session cookie, CSRF token), sealed there into the record. */
function saveButton(name, parts) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "save-file";
  button.textContent = S.save;
  button.addEventListener("click", async () => {
    button.disabled = true;
    let status = button.nextElementSibling;
    if (!status) {
      status = document.createElement("span");
      status.setAttribute("role", "status");
      button.after(status);
    }
    status.className = "";
    status.textContent = ` ${S.saving}`;
    const ext = (name.split(".").pop() || "").toLowerCase();
    const type = RECORD_TYPES[ext];
    let message;
    if (!type) {
      message = S.save_type;
    } else {
      const body = new FormData();
      body.append("file", new Blob(parts, { type }), name);
      body.append("name", name);
      const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
      try {
        const response = await fetch(`/consult/${encodeURIComponent(root.dataset.appointment)}/documents`, {
          method: "POST", body, credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
        });
        message = response.ok ? `${S.saved} ${name}` : response.status === 403 ? S.save_refused
          : response.status === 413 ? S.save_too_big : response.status === 415 ? S.save_type : S.save_failed;
        if (response.ok) { button.remove(); status.dataset.saved = "1"; }
      } catch {
        message = S.save_failed;
      }
    }
    status.textContent = ` ${message}`;
    if (!status.dataset.saved) { status.className = "notice"; button.disabled = false; }
  });
  return button;
}

// ------------------------------------------------------------------------------ network quality

const lastStats = new Map();

async function measure() {
  let worst = null;
  let relayed = false;
  for (const peer of state.peers.values()) {
    if (peer.pc.connectionState !== "connected") continue;
    const report = await peer.pc.getStats();
    let rtt = 0, lost = 0, received = 0;
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        rtt = s.currentRoundTripTime ?? 0;
        const local = report.get(s.localCandidateId);
        if (local?.candidateType === "relay") relayed = true;
      }
      if (s.type === "inbound-rtp") { lost += s.packetsLost ?? 0; received += s.packetsReceived ?? 0; }
    });
    const before = lastStats.get(peer.pid) ?? { lost: 0, received: 0 };
    lastStats.set(peer.pid, { lost, received });
    const dl = lost - before.lost, dr = received - before.received;
    const loss = dl + dr > 0 ? dl / (dl + dr) : 0;
    const level = rtt < 0.3 && loss < 0.02 ? 0 : rtt < 0.6 && loss < 0.08 ? 1 : 2;
    worst = Math.max(worst ?? 0, level);
  }
  if (state.ended) return;
  const box = $("quality");
  box.dataset.level = worst === null ? "none" : ["good", "fair", "poor"][worst];
  $("quality-text").textContent = worst === null ? S.quality_none : [S.quality_good, S.quality_fair, S.quality_poor][worst];
  $("quality-relay").hidden = !relayed;
  await checkDecryption();
}

// Frames that keep failing to authenticate while none decrypts: the keys differ (someone in
// the middle, or a fault). Said at once, whatever the safety code shows.
// And a sender whose encoder produced frames that never entered the transform would send them
// in clear: the call ends at once.
async function checkDecryption() {
  if (state.peers.size === 0) return;
  const { peers } = await ask({ type: "stats" });
  for (const [pid, s] of Object.entries(peers)) {
    const peer = state.peers.get(pid);
    if (peer) {
      let encoded = 0;
      (await peer.pc.getStats()).forEach((r) => { if (r.type === "outbound-rtp" && r.kind === "video") encoded += r.framesEncoded ?? 0; });
      if (encoded > s.send.videoFrames + 30) { finish(S.e2ee_bypassed); setE2ee("danger", S.e2ee_bypassed); return; }
    }
    if (!state.epoch) continue;
    const before = state.lastReceive?.[pid] ?? { decrypted: 0, dropped: 0 };
    const failed = (s.receive.reasons.IntegrityError ?? 0) - (before.failed ?? 0);
    const decrypted = s.receive.decrypted - before.decrypted;
    state.lastReceive = { ...(state.lastReceive ?? {}), [pid]: { decrypted: s.receive.decrypted, failed: s.receive.reasons.IntegrityError ?? 0 } };
    if (failed > 20 && decrypted === 0) warn(S.e2ee_undecryptable);
  }
}

// ------------------------------------------------------------------------------ signaling

function send(message) {
  if (state.ws?.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
}

function signal(to, data) { send({ type: "signal", to, data }); }

function renderLobby(waiting) {
  const list = $("lobby-list");
  list.replaceChildren();
  $("lobby-empty").hidden = waiting.length > 0;
  for (const person of waiting) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = person.name;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = S.admit;
    button.setAttribute("aria-label", `${S.admit} ${person.name}`);
    button.addEventListener("click", () => { button.disabled = true; send({ type: "admit", pid: person.pid }); });
    item.append(name, button);
    list.append(item);
  }
}

function onMessage(message) {
  switch (message.type) {
    case "welcome":
      state.me = message.you;
      state.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
      if (test?.iceServers) state.iceServers = test.iceServers;
      break;
    case "waiting":
      setStage(S.waiting);
      $("waiting-note").hidden = false;
      break;
    case "lobby":
      renderLobby(message.waiting ?? []);
      break;
    case "admitted":
      state.admitted = true;
      $("waiting-note").hidden = true;
      setStage(message.peers.length ? S.connecting : S.alone);
      for (const pid of message.peers) addPeer(pid, true, message.names?.[pid]);
      rosterChanged();
      break;
    case "joined":
      setStage(S.connecting);
      addPeer(message.pid, false, message.name);
      rosterChanged();
      break;
    case "left":
      removePeer(message.pid);
      if (state.peers.size > 0) rosterChanged();
      else state.keys.setRoster([]);
      break;
    case "signal":
      onSignal(message.from, message.data).catch(() => setStage(S.connection_failed));
      break;
    case "key":
      state.keys.receive(message.from, message);
      break;
    case "ended":
      finish(S[`ended_${message.reason}`] ?? S.ended_policy);
      break;
    case "error":
      chatNotice(S.server_error);
      break;
    default:
      break;
  }
}

function connect() {
  const ws = new WebSocket(root.dataset.wsUrl);
  state.ws = ws;
  ws.onmessage = (e) => { try { onMessage(JSON.parse(e.data)); } catch (err) { console.error(err); } };
  ws.onclose = (e) => {
    if (state.ended) return;
    const reason = { 4401: S.closed_signed_out, 4403: S.closed_refused, 4409: S.closed_replaced, 4410: S.ended_policy }[e.code] ?? S.closed_lost;
    finish(reason);
  };
  state.ping = setInterval(() => send({ type: "ping" }), 20000);
}

function finish(text) {
  if (state.ended) return;
  state.ended = true;
  clearInterval(state.ping);
  clearInterval(state.quality);
  for (const pid of [...state.peers.keys()]) removePeer(pid);
  state.local?.getTracks().forEach((t) => t.stop());
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close(1000);
  state.worker?.terminate();
  setStage(text);
  setE2ee("ended", S.e2ee_ended);
  $("quality").dataset.level = "none";
  $("quality-text").textContent = S.quality_none;
  $("quality-relay").hidden = true;
  $("local-video").srcObject = null;
  $("waiting-note").hidden = true;
  for (const id of ["mute", "camera", "hangup", "mic", "cam", "chat-text", "chat-send", "chat-file"]) $(id).disabled = true;
  $("after").hidden = false;
}

function hangUp() {
  send({ type: "leave" });
  finish(S.ended_you);
}

// ------------------------------------------------------------------------------ test hooks

function installTestHooks() {
  if (!test) return;
  test.ready = true;
  test.stats = async () => {
    const out = {};
    for (const [pid, peer] of state.peers) {
      let framesDecoded = 0, framesReceived = 0;
      (await peer.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") { framesDecoded += s.framesDecoded ?? 0; framesReceived += s.framesReceived ?? 0; }
      });
      out[pid] = { framesDecoded, framesReceived, connection: peer.pc.connectionState };
    }
    return { peers: out, worker: (await ask({ type: "stats" })).peers, code: state.epoch?.code ?? null };
  };
  test.capture = async (count) => {
    const [pid] = state.peers.keys();
    const frames = (await ask({ type: "capture", peer: pid, count })).frames;
    return frames.map((f) => Array.from(new Uint8Array(f), (b) => b.toString(16).padStart(2, "0")).join(""));
  };
  // The base keys of the current epoch (test mode only): what the Python reference needs to
  // decrypt captured frames.
  test.epochKeys = () => {
    const out = {};
    for (const [pid, k] of state.epoch?.peers ?? []) {
      const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      out[pid] = { send_kid: k.kids.send, receive_kid: k.kids.receive, send_key: hex(k.sendKey), receive_key: hex(k.receiveKey) };
    }
    return out;
  };
  test.senders = async () => {
    const out = [];
    for (const peer of state.peers.values()) {
      for (const t of peer.pc.getTransceivers()) out.push({ mid: t.mid, kind: t.receiver.track.kind, direction: t.direction, current: t.currentDirection, track: t.sender.track?.readyState ?? null, transform: !!t.sender.transform });
      (await peer.pc.getStats()).forEach((s) => { if (s.type === "outbound-rtp") out.push({ outbound: s.kind, frames: s.framesEncoded, packets: s.packetsSent, codec: s.codecId, limit: s.qualityLimitationReason }); });
    }
    return out;
  };
  test.relayed = async () => {
    for (const peer of state.peers.values()) {
      const report = await peer.pc.getStats();
      let relay = false;
      report.forEach((s) => {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
          relay = report.get(s.localCandidateId)?.candidateType === "relay" && report.get(s.remoteCandidateId)?.candidateType === "relay";
        }
      });
      if (relay) return true;
    }
    return false;
  };
}

// ------------------------------------------------------------------------------ start

async function start() {
  showCode(null);
  if (typeof RTCRtpScriptTransform === "undefined" || !window.RTCPeerConnection || !navigator.mediaDevices) {
    setE2ee("danger", S.e2ee_unsupported);
    $("unsupported").hidden = false;
    setStage(S.cannot_join);
    $("hangup").disabled = true;
    return;
  }
  setE2ee("waiting", S.e2ee_ready);
  startWorker();
  state.keys = new CallKeys({ send, onEpoch: (e) => onEpoch(e).catch(() => warn(S.e2ee_failed)), onFailure: onKeyFailure, test: test ?? {} });
  installTestHooks();
  state.local = await openMedia(null, null);
  $("local-video").srcObject = state.local;
  if (!state.local.getAudioTracks().length) $("mute").disabled = true;
  if (!state.local.getVideoTracks().length) $("camera").disabled = true;
  await fillDevices().catch(() => {});
  $("mute").addEventListener("click", () => toggle("audio"));
  $("camera").addEventListener("click", () => toggle("video"));
  $("hangup").addEventListener("click", hangUp);
  $("mic").addEventListener("change", () => switchDevice("audio"));
  $("cam").addEventListener("change", () => switchDevice("video"));
  $("code-match").addEventListener("click", () => {
    state.verified = true;
    $("code-result").textContent = S.code_confirmed;
    if (!state.warning) setE2ee("verified", S.e2ee_verified);
  });
  $("code-differ").addEventListener("click", () => {
    state.verified = false;
    $("code-result").textContent = "";
    warn(S.code_mismatch);
  });
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("chat-text");
    sendText(input.value).catch(() => chatNotice(S.chat_refused));
    input.value = "";
  });
  $("chat-file").addEventListener("change", (e) => {
    for (const file of e.target.files) sendFile(file).catch(() => chatNotice(S.chat_refused));
    e.target.value = "";
  });
  state.quality = setInterval(() => measure().catch(() => {}), 2000);
  setStage(S.connecting_server);
  connect();
}

start();
