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
//   {type: "stats", id}                              -> {type: "stats", id, peers: {...}}
// Every command is answered {type: "done", id} or {type: "error", id, error} when it has an id.
// Until a sending key is in use, outgoing frames are dropped: no frame leaves unencrypted.

import { SFrameContext, createReceiverTransform, createSenderTransform } from "./sframe.js";

const peers = new Map();

function peerState(peer) {
  let state = peers.get(peer);
  if (!state) {
    state = {
      context: new SFrameContext(),
      kid: null,
      send: { encrypted: 0, dropped: 0, lastError: "" },
      receive: { decrypted: 0, dropped: 0, lastError: "" },
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
    case "useKid":
      state.kid = BigInt(message.kid);
      return undefined;
    case "removeKey":
      state.context.removeKey(message.kid);
      return undefined;
    case "stats": {
      const out = {};
      for (const [peer, s] of peers) out[peer] = { kid: s.kid === null ? null : Number(s.kid), send: { ...s.send }, receive: { ...s.receive } };
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
      self.postMessage(message.type === "stats" ? { type: "stats", id: message.id, peers: result } : { type: "done", id: message.id });
    }
  } catch (e) {
    if (message.id !== undefined) self.postMessage({ type: "error", id: message.id, error: e.name });
  }
};

self.onrtctransform = (event) => {
  const { side, peer } = event.transformer.options;
  const state = peerState(String(peer));
  const stream = side === "send"
    ? createSenderTransform(state.context, () => state.kid ?? -1n, state.send) // -1: dropped
    : createReceiverTransform(state.context, state.receive);
  event.transformer.readable.pipeThrough(stream).pipeTo(event.transformer.writable);
};
