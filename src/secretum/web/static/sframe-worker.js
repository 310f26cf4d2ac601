// The Encoded Transform worker of a call: SFrame on every frame (see sframe.js for the flow).
// Start it as a module worker: new Worker("/static/sframe-worker.js", {type: "module"}).
//
// One SFrame context per peer (a P2P mesh has one RTCPeerConnection per peer, and each
// direction of each pair has its own base key). The page attaches transforms with
//   sender.transform = new RTCRtpScriptTransform(worker, {side: "send", peer: "<peer id>"});
//   receiver.transform = new RTCRtpScriptTransform(worker, {side: "receive", peer: "<peer id>"});
// and sends keys with postMessage (base keys are bytes; they stay in this worker, imported as
// non-extractable CryptoKeys):
//   {type: "addEncryptionKey", peer, kid, baseKey}   my sending key towards peer, epoch kid
//   {type: "addDecryptionKey", peer, kid, baseKey}   the peer's sending key, epoch kid
//   {type: "useKid", peer, kid}                      start sending under epoch kid
//   {type: "removeKey", peer, kid}                   end of an old epoch's grace period
//   {type: "forget", peer}                           the peer left: its keys and state go
//   {type: "stats", id}                              -> {type: "stats", id, peers: {...}}
//       per peer: kid in use, send {encrypted, dropped, reasons, busyUs, bytes} and receive
//       {decrypted, dropped, reasons, busyUs, bytes} (busyUs: time spent in SFrame, µs)
//   {type: "capture", peer, count, id}               -> {type: "captured", id, frames: [...]}:
//       copies of the next `count` frames received from peer, as they arrived (SFrame
//       ciphertexts), for tests and diagnostics (the Python reference decrypts them).
// Every command is answered {type: "done", id} or {type: "error", id, error} when it has an id.
// Until a sending key is in use, outgoing frames are dropped: no frame leaves unencrypted.

import { SFrameContext, createReceiverTransform, createSenderTransform } from "./sframe.js";

// One replay window per peer covers its audio AND video: they share the sender's counter but
// arrive through two streams with their own delays, so the window must span the skew between
// them (1024 counters: about 12 s of audio at 50 frames/s plus video at 30 frames/s).
// Chromium sometimes hands the same received video frame over several times at the start of a
// stream (seen in tests/browser/test_sframe_browser.py, byte-identical): the copies are dropped
// as replays, counted in stats.receive.reasons.ReplayError.
const REPLAY_WINDOW = 1024;
const peers = new Map();

function peerState(peer) {
  let state = peers.get(peer);
  if (!state) {
    state = {
      context: new SFrameContext({ replayWindow: REPLAY_WINDOW }),
      kid: null,
      send: { encrypted: 0, dropped: 0, lastError: "", reasons: {}, busyUs: 0, bytes: 0, videoFrames: 0 },
      receive: { decrypted: 0, dropped: 0, lastError: "", reasons: {}, busyUs: 0, bytes: 0 },
      captures: [],
      senders: [],
    };
    peers.set(peer, state);
  }
  return state;
}

async function handle(message) {
  const state = message.peer === undefined ? null : peerState(String(message.peer));
  switch (message.type) {
    case "addEncryptionKey":
      return state.context.addEncryptionKey(message.kid, message.baseKey);
    case "addDecryptionKey":
      return state.context.addDecryptionKey(message.kid, message.baseKey);
    case "useKid": {
      state.kid = BigInt(message.kid);
      // The first epoch: frames were dropped until now, the first key frame with them. A new
      // epoch: a receiver that installs the new key a moment late drops a few frames. Either
      // way, ask the video encoder for a key frame so that decoding (re)starts at once (audio
      // rejects the request: ignored).
      for (const t of state.senders) t.generateKeyFrame?.().catch(() => {});
      return undefined;
    }
    case "forget":
      peers.delete(String(message.peer));
      return undefined;
    case "removeKey":
      state.context.removeKey(message.kid);
      return undefined;
    case "capture":
      return new Promise((resolve) => {
        state.captures.push({ remaining: Number(message.count), frames: [], resolve });
      });
    case "stats": {
      const out = {};
      for (const [peer, s] of peers) out[peer] = { kid: s.kid === null ? null : Number(s.kid), send: { ...s.send, reasons: { ...s.send.reasons } }, receive: { ...s.receive, reasons: { ...s.receive.reasons } } };
      return out;
    }
    default:
      throw new Error(`unknown command ${message.type}`);
  }
}

self.onmessage = async (event) => {
  const message = event.data;
  try {
    const result = await handle(message);
    if (message.id !== undefined) {
      if (message.type === "stats") self.postMessage({ type: "stats", id: message.id, peers: result });
      else if (message.type === "capture") self.postMessage({ type: "captured", id: message.id, frames: result });
      else self.postMessage({ type: "done", id: message.id });
    }
  } catch (e) {
    if (message.id !== undefined) self.postMessage({ type: "error", id: message.id, error: e.name });
  }
};

self.onrtctransform = (event) => {
  const { side, peer } = event.transformer.options;
  const state = peerState(String(peer));
  if (side === "send") {
    state.senders.push(event.transformer);
    const stream = createSenderTransform(state.context, () => state.kid ?? -1n, state.send); // -1: dropped
    // Video frames that enter the transform (RTCEncodedVideoFrame has a type, audio has none):
    // the page compares them with the encoder's framesEncoded, so a sender whose frames would
    // bypass the transform is caught.
    const count = new TransformStream({
      transform(frame, controller) {
        if (frame.type !== undefined) state.send.videoFrames++;
        controller.enqueue(frame);
      },
    });
    event.transformer.readable.pipeThrough(count).pipeThrough(stream).pipeTo(event.transformer.writable);
    return;
  }
  const tap = new TransformStream({
    transform(frame, controller) {
      for (const capture of state.captures) {
        if (capture.remaining > 0) {
          capture.frames.push(frame.data.slice(0));
          if (--capture.remaining === 0) capture.resolve(capture.frames);
        }
      }
      state.captures = state.captures.filter((c) => c.remaining > 0);
      controller.enqueue(frame);
    },
  });
  event.transformer.readable
    .pipeThrough(tap)
    .pipeThrough(createReceiverTransform(state.context, state.receive))
    .pipeTo(event.transformer.writable);
};
