// End-to-end keys of a call: ephemeral ECDH P-256 in WebCrypto, commit before reveal over the
// signaling socket, per-sender SFrame base keys and chat keys by HKDF, the safety code.
// No DOM: the page (call.js) drives it; unit-checked in Chromium (tests/browser/).
//
// Rounds. A round is the set of participants present (its "roster"). At every change (someone
// admitted, joined or left) each participant makes a FRESH key pair (the private key is
// non-extractable) and sends {"type":"key","commitment": b64url(SHA-256(public key))}. It
// reveals {"type":"key","public_key": b64url(raw point)} only once it holds a commitment of
// every other participant received in this round, and accepts a revealed key only if it
// matches that participant's commitment. A key pair per round (not one per call) keeps the
// rule true for a late joiner too: keys revealed in an earlier round are never reused, so
// nobody's key is known before every commitment of the round is in.
//
// Why it matters: the safety code is 20 bits. A server in the middle that saw a key before
// choosing its own could grind keys until the two codes match; committed first, it cannot.
//
// Epoch keys (one per round), for each peer p, with t = transcript(all public keys):
//   shared      = ECDH(my private key, p's public key)
//   send key    = deriveBaseKey(shared, t, b64url(my public key))      (sframe.js)
//   receive key = deriveBaseKey(shared, t, b64url(p's public key))
//   chat keys   = the same with the "Secretum chat 1.0" label (call-chat.js)
//   KIDs        = 2 * (first 31 bits of SHA-256(t)) + (0 for the sender with the smaller
//                 public key, 1 for the other): a new KID at every join or leave, and the two
//                 directions of a pair never share one (one SFrame context per peer).
//   code        = safetyCode(t): 6 digits, the same on every side iff nobody substituted a key.
//
// Stale messages: a participant's messages arrive in the order it sent them, but a round can
// change between two of them (a commitment of the old round still in flight when someone
// joins). So a round reveals no sooner than QUIET_MS after it starts: a later commitment of the
// same participant replaces an earlier one until then. A revealed key matching an earlier
// commitment of its sender is from a past round: ignored. A commitment arriving after I
// revealed (its sender started late, or started over) makes me start over with a new key pair
// keeping that commitment, at most MAX_RESTARTS times per roster; beyond that the exchange
// fails (shown as a warning). A key committed after my reveal is never accepted.

import { deriveBaseKey, generateCallKeyPair, safetyCode, sharedSecret, transcript } from "./sframe.js";
import { deriveChatKey } from "./call-chat.js";

const subtle = globalThis.crypto.subtle;
export const MAX_RESTARTS = 3;
export const QUIET_MS = 800;

export function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function fromB64url(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const s = atob(text.replaceAll("-", "+").replaceAll("_", "/") + "===".slice((text.length + 3) % 4));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

export async function commitmentOf(publicKeyRaw) {
  return b64url(new Uint8Array(await subtle.digest("SHA-256", publicKeyRaw)));
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** The two KIDs of a pair in an epoch: {send, receive} seen from `mine`. */
export async function pairKids(transcriptBytes, mine, theirs) {
  const h = new Uint8Array(await subtle.digest("SHA-256", transcriptBytes));
  const base = ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 1;
  const low = compareBytes(mine, theirs) < 0;
  return { send: base * 2 + (low ? 0 : 1), receive: base * 2 + (low ? 1 : 0) };
}

/**
 * The key agreement of one participant. send(message) posts a signaling message; onEpoch(epoch)
 * receives {code, transcript, peers: Map(pid -> {kids, sendKey, receiveKey, chatSend,
 * chatReceive})} at the end of every round; onFailure(reason) is told "mismatch" (a revealed
 * key does not match its commitment: someone may be in the middle), "invalid" (a malformed key)
 * or "restarts" (the round never settled). test: {wrongKey} makes every receive key random.
 */
export class CallKeys {
  constructor({ send, onEpoch, onFailure, test = {} }) {
    this.send = send;
    this.onEpoch = onEpoch;
    this.onFailure = onFailure;
    this.test = test;
    this.queue = Promise.resolve();
    this.round = null;
    this.history = new Map(); // pid -> Set of every commitment seen from it
    this.early = new Map(); // pid not (yet) in the roster -> its last commitment
  }

  _serial(work) {
    this.queue = this.queue.then(work).catch((e) => { console.error("call keys", e); this.onFailure("invalid"); });
    return this.queue;
  }

  /** A new roster (the other participants' pids): a new round with a fresh key pair. */
  setRoster(peers) {
    return this._serial(() => this._start([...peers].sort(), 0));
  }

  /** A "key" message from the signaling socket. */
  receive(from, message) {
    return this._serial(() => this._receive(String(from), message));
  }

  async _start(peers, restarts) {
    if (peers.length === 0) { this.round = null; return; }
    const pair = await generateCallKeyPair();
    const commitment = await commitmentOf(pair.publicKeyRaw);
    const round = { peers, pair, commitment, restarts, revealed: false, commitments: new Map(), keys: new Map(), done: false, quiet: true };
    this.round = round;
    setTimeout(() => this._serial(async () => { round.quiet = false; if (this.round === round) await this._maybeReveal(); }), this.test.quietMs ?? QUIET_MS);
    for (const pid of peers) {
      if (this.early.has(pid)) { this.round.commitments.set(pid, this.early.get(pid)); this.early.delete(pid); }
    }
    this.send({ type: "key", commitment });
    await this._maybeReveal();
  }

  async _receive(from, message) {
    const round = this.round;
    if (typeof message.commitment === "string") {
      const seen = this.history.get(from) ?? new Set();
      seen.add(message.commitment);
      this.history.set(from, seen);
      if (!round || !round.peers.includes(from)) { this.early.set(from, message.commitment); return; }
      if (round.revealed) {
        // Committed after my key was out: start over (a new key pair) with this commitment
        // and those of the others whose keys have not come yet.
        if (round.restarts >= MAX_RESTARTS) { this.onFailure("restarts"); return; }
        this.early.set(from, message.commitment);
        for (const [pid, c] of round.commitments) if (pid !== from && !round.keys.has(pid)) this.early.set(pid, c);
        await this._start(round.peers, round.restarts + 1);
        return;
      }
      round.commitments.set(from, message.commitment);
      round.keys.delete(from); // a key revealed against the replaced commitment
      await this._maybeReveal();
      return;
    }
    if (typeof message.public_key !== "string") return;
    if (!round || !round.peers.includes(from)) return;
    const raw = fromB64url(message.public_key);
    const commitment = await commitmentOf(raw);
    if (round.commitments.get(from) !== commitment) {
      if (this.history.get(from)?.has(commitment)) return; // a key of a past round
      this.onFailure("mismatch");
      return;
    }
    if (raw.length !== 65 || raw[0] !== 4) { this.onFailure("invalid"); return; }
    round.keys.set(from, raw);
    await this._maybeFinish();
  }

  async _maybeReveal() {
    const round = this.round;
    if (!round || round.quiet || round.revealed || !round.peers.every((pid) => round.commitments.has(pid))) return;
    round.revealed = true;
    this.send({ type: "key", public_key: b64url(round.pair.publicKeyRaw) });
    await this._maybeFinish();
  }

  async _maybeFinish() {
    const round = this.round;
    if (!round || !round.revealed || round.done || !round.peers.every((pid) => round.keys.has(pid))) return;
    round.done = true;
    const mine = round.pair.publicKeyRaw;
    const t = transcript([mine, ...round.keys.values()]);
    const myId = b64url(mine);
    const peers = new Map();
    for (const pid of round.peers) {
      const theirs = round.keys.get(pid);
      const shared = await sharedSecret(round.pair.privateKey, theirs);
      const theirId = b64url(theirs);
      const receiveKey = this.test.wrongKey ? globalThis.crypto.getRandomValues(new Uint8Array(32)) : await deriveBaseKey(shared, t, theirId);
      peers.set(pid, {
        kids: await pairKids(t, mine, theirs),
        sendKey: await deriveBaseKey(shared, t, myId),
        receiveKey,
        chatSend: await deriveChatKey(shared, t, myId, ["encrypt"]),
        chatReceive: await deriveChatKey(shared, t, theirId, ["decrypt"]),
      });
      shared.fill(0);
    }
    this.onEpoch({ code: await safetyCode(t), transcript: t, peers });
  }
}
