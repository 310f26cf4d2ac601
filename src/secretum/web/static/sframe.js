// SFrame (RFC 9605) over WebCrypto: end-to-end encryption of every encoded audio and video
// frame of a teleconsultation. An ES module, for a page and for a Worker (no DOM used).
// The same algorithms as the Python reference secretum.crypto.sframe; both pass the RFC 9605
// Appendix C vectors (tests/vectors/rfc9605_*.json) and are cross-checked on random frames in
// Chromium (tests/browser/test_sframe_browser.py).
//
// How a call uses it (the signaling and the call page are built on top of this module):
//  1. Per call, per participant: `generateCallKeyPair()` -> {privateKey (non-extractable),
//     publicKeyRaw (65 bytes)}. Only publicKeyRaw travels over signaling. Signaling must
//     COMMIT BEFORE IT REVEALS (send SHA-256(publicKeyRaw) first, the key only once every
//     other commitment has arrived): the 6-digit safety code is 20 bits, and a man in the
//     middle who saw a key before choosing his own could otherwise grind keys until it matches.
//  2. Epoch = the set of participants present; its number is the SFrame KID, +1 at every join
//     or leave. `transcript(publicKeys)` sorts the epoch's keys (same bytes on every side).
//  3. For each peer (one RTCPeerConnection of the P2P mesh): `sharedSecret(privateKey,
//     peerPublicRaw)`, then `deriveBaseKey(shared, transcript, senderId)` once with my id (my
//     sending key: `addEncryptionKey(kid, key)`) and once with the peer's id (its sending key:
//     `addDecryptionKey(kid, key)`). Each direction has its own key (RFC 9605: one sender per
//     key; a key encrypts or decrypts, never both).
//  4. Frames: in a Worker, `onrtctransform` pipes the sender's frames through
//     `createSenderTransform(context, () => currentKid)` and the receiver's through
//     `createReceiverTransform(context)` (sframe-worker.js does exactly this, keys arrive by
//     postMessage). A frame that does not authenticate, replays, or has an unknown KID is
//     dropped and counted; a frame that cannot be encrypted is dropped, never sent in clear.
//     Switch `currentKid` to a new epoch only when the peers have its decryption key; keep the
//     previous epoch's decryption key a few seconds (frames in flight), then `removeKey`.
//  5. `safetyCode(transcript)` -> 6 digits shown on both sides; a mismatch -> warn, end call.
//
// Frame metadata (authenticated, not encrypted) is empty: the whole encoded frame is the
// plaintext. Cipher suites: the five of RFC 9605; Secretum uses AES_256_GCM_SHA512_128 (5), the
// default. KIDs and counters are BigInt (numbers are accepted) up to 2^64-1.
// Codec note for the call page: the H.264 packetizer reads NAL units inside the frame, which
// SFrame makes opaque; prefer VP8/VP9/AV1 (RTCRtpTransceiver.setCodecPreferences).

const subtle = globalThis.crypto.subtle;
const te = new TextEncoder();
const EMPTY = new Uint8Array(0);

export const MAX_VALUE = (1n << 64n) - 1n;

export const CipherSuite = Object.freeze({
  AES_128_CTR_HMAC_SHA256_80: 1,
  AES_128_CTR_HMAC_SHA256_64: 2,
  AES_128_CTR_HMAC_SHA256_32: 3,
  AES_128_GCM_SHA256_128: 4,
  AES_256_GCM_SHA512_128: 5,
});
export const DEFAULT_SUITE = CipherSuite.AES_256_GCM_SHA512_128;

// RFC 9605 Table 2. nka 0: AES-GCM; otherwise the AES-CTR + HMAC compound AEAD (§4.5.1).
const PARAMS = {
  1: { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nn: 12, nt: 10 },
  2: { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nn: 12, nt: 8 },
  3: { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nn: 12, nt: 4 },
  4: { hash: "SHA-256", nh: 32, nka: 0, nk: 16, nn: 12, nt: 16 },
  5: { hash: "SHA-512", nh: 64, nka: 0, nk: 32, nn: 12, nt: 16 },
};

/** Input is not valid (range, suite, key use): a programming or protocol error. */
export class SFrameError extends Error {
  constructor(message) { super(message); this.name = "SFrameError"; }
}
/** Malformed header (truncated, not minimal). Also an integrity failure: drop the frame. */
export class SFrameHeaderError extends SFrameError {
  constructor(message) { super(message); this.name = "SFrameHeaderError"; this.integrity = true; }
}
/** The frame did not authenticate (tampered, wrong key, wrong metadata). Never returns data. */
export class IntegrityError extends Error {
  constructor(message) { super(message); this.name = "IntegrityError"; this.integrity = true; }
}
/** No decryption key for the KID (yet): the caller may buffer the frame (RFC 9605 §4.4.4). */
export class UnknownKeyIdError extends IntegrityError {
  constructor(kid) { super(`no SFrame decryption key for KID ${kid}`); this.name = "UnknownKeyIdError"; this.kid = kid; }
}
/** (KID, CTR) already accepted, or older than the replay window. */
export class ReplayError extends IntegrityError {
  constructor(message) { super(message); this.name = "ReplayError"; }
}

function params(suite) {
  const p = PARAMS[suite];
  if (!p) throw new SFrameError(`unknown SFrame cipher suite ${suite}`);
  return p;
}

function big(value, name) {
  const v = BigInt(value);
  if (v < 0n || v > MAX_VALUE) throw new SFrameError(`SFrame ${name} must be in 0..2^64-1`);
  return v;
}

function bytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new SFrameError("expected bytes (Uint8Array or ArrayBuffer)");
}

function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function beBytes(value, length) {
  const out = new Uint8Array(length);
  let v = BigInt(value);
  for (let i = length - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

function minimalBytes(value) {
  let n = 1;
  while (value >> BigInt(8 * n) > 0n) n++;
  return beBytes(value, n);
}

// ------------------------------------------------------------------------ header (§4.3)

/** The SFrame header of (kid, ctr): config byte X|KKK|Y|CCC, then KID, then CTR (minimal). */
export function encodeHeader(kid, ctr) {
  const k = big(kid, "KID");
  const c = big(ctr, "CTR");
  let config = 0;
  const tail = [];
  if (k < 8n) config |= Number(k) << 4;
  else { const b = minimalBytes(k); config |= 0x80 | ((b.length - 1) << 4); tail.push(b); }
  if (c < 8n) config |= Number(c);
  else { const b = minimalBytes(c); config |= 0x08 | (b.length - 1); tail.push(b); }
  return concat(Uint8Array.of(config), ...tail);
}

function readField(data, offset, extended, bits, name) {
  if (!extended) return [BigInt(bits), offset];
  const length = bits + 1;
  if (offset + length > data.length) throw new SFrameHeaderError(`SFrame header truncated in the ${name}`);
  let value = 0n;
  for (let i = 0; i < length; i++) value = (value << 8n) | BigInt(data[offset + i]);
  if (value < 8n || data[offset] === 0) throw new SFrameHeaderError(`SFrame header: ${name} not in the minimal encoding`);
  return [value, offset + length];
}

/** Parse the header at the start of data: {kid, ctr, length} (BigInt KID and CTR). */
export function decodeHeader(data) {
  const d = bytes(data);
  if (d.length === 0) throw new SFrameHeaderError("SFrame header missing (empty frame)");
  const config = d[0];
  const [kid, o1] = readField(d, 1, (config & 0x80) !== 0, (config >> 4) & 7, "KID");
  const [ctr, o2] = readField(d, o1, (config & 0x08) !== 0, config & 7, "CTR");
  return { kid, ctr, length: o2 };
}

// ------------------------------------------------------------- key derivation (§4.4.2)

/** HKDF-Expand labels: "SFrame 1.0 Secret key|salt " + KID (8 bytes BE) + suite (2 bytes BE). */
export function sframeLabels(kid, suite = DEFAULT_SUITE) {
  params(suite);
  const tail = concat(beBytes(big(kid, "KID"), 8), beBytes(suite, 2));
  return { key: concat(te.encode("SFrame 1.0 Secret key "), tail), salt: concat(te.encode("SFrame 1.0 Secret salt "), tail) };
}

async function hkdfKey(baseKey) {
  if (baseKey instanceof CryptoKey) return baseKey;
  return subtle.importKey("raw", bytes(baseKey), "HKDF", false, ["deriveBits"]);
}

/** derive_key_salt: raw {key, salt} bytes (HKDF with an empty salt = RFC's HKDF-Extract("")). */
export async function deriveKeySalt(kid, baseKey, suite = DEFAULT_SUITE) {
  const p = params(suite);
  const labels = sframeLabels(kid, suite);
  const ikm = await hkdfKey(baseKey);
  const derive = (info, n) => subtle.deriveBits({ name: "HKDF", hash: p.hash, salt: EMPTY, info }, ikm, 8 * n);
  const [key, salt] = await Promise.all([derive(labels.key, p.nk), derive(labels.salt, p.nn)]);
  return { key: new Uint8Array(key), salt: new Uint8Array(salt) };
}

/** The AEAD of a suite over raw key bytes, as non-extractable CryptoKeys. */
async function importAead(suite, rawKey) {
  const p = params(suite);
  if (p.nka === 0) {
    const gcm = await subtle.importKey("raw", rawKey, "AES-GCM", false, ["encrypt", "decrypt"]);
    return { p, gcm };
  }
  const [ctr, mac] = await Promise.all([
    subtle.importKey("raw", rawKey.subarray(0, p.nka), "AES-CTR", false, ["encrypt", "decrypt"]),
    subtle.importKey("raw", rawKey.subarray(p.nka), { name: "HMAC", hash: p.hash }, false, ["sign"]),
  ]);
  return { p, ctr, mac };
}

async function ctrTag(aead, nonce, aad, ct) {
  const { p } = aead;
  const data = concat(beBytes(aad.length, 8), beBytes(ct.length, 8), beBytes(p.nt, 8), nonce, aad, ct);
  return new Uint8Array(await subtle.sign("HMAC", aead.mac, data)).subarray(0, p.nt);
}

async function sealWith(aead, nonce, aad, pt) {
  if (aead.gcm) {
    return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, aead.gcm, pt));
  }
  const counter = concat(nonce, new Uint8Array(4));
  const ct = new Uint8Array(await subtle.encrypt({ name: "AES-CTR", counter, length: 32 }, aead.ctr, pt));
  return concat(ct, await ctrTag(aead, nonce, aad, ct));
}

async function openWith(aead, nonce, aad, ct) {
  const { p } = aead;
  if (ct.length < p.nt) throw new IntegrityError("SFrame ciphertext shorter than its tag");
  if (aead.gcm) {
    try {
      return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, aead.gcm, ct));
    } catch {
      throw new IntegrityError("SFrame frame did not authenticate");
    }
  }
  const inner = ct.subarray(0, ct.length - p.nt);
  const tag = ct.subarray(ct.length - p.nt);
  const expected = await ctrTag(aead, nonce, aad, inner);
  let diff = 0;
  for (let i = 0; i < p.nt; i++) diff |= tag[i] ^ expected[i]; // constant time
  if (diff !== 0) throw new IntegrityError("SFrame frame did not authenticate");
  const counter = concat(nonce, new Uint8Array(4));
  return new Uint8Array(await subtle.decrypt({ name: "AES-CTR", counter, length: 32 }, aead.ctr, inner));
}

/** AEAD.Encrypt / AEAD.Decrypt of a suite over a raw key (used by the C.2 vectors). */
export async function aeadEncrypt(suite, key, nonce, aad, pt) {
  return sealWith(await importAead(suite, bytes(key)), bytes(nonce), bytes(aad), bytes(pt));
}
export async function aeadDecrypt(suite, key, nonce, aad, ct) {
  return openWith(await importAead(suite, bytes(key)), bytes(nonce), bytes(aad), bytes(ct));
}

// ------------------------------------------------------- encrypt / decrypt (§4.4.3-4)

/** The per-KID state: AEAD CryptoKeys (non-extractable) and the salt. */
async function deriveState(kid, baseKey, suite) {
  const { key, salt } = await deriveKeySalt(kid, baseKey, suite);
  const aead = await importAead(suite, key);
  key.fill(0);
  return { aead, salt };
}

function nonceOf(salt, ctr) {
  const nonce = salt.slice();
  const c = beBytes(ctr, 8);
  for (let i = 0; i < 8; i++) nonce[nonce.length - 8 + i] ^= c[i];
  return nonce;
}

async function encryptWith(state, kid, ctr, metadata, pt) {
  const header = encodeHeader(kid, ctr);
  const body = await sealWith(state.aead, nonceOf(state.salt, ctr), concat(header, metadata), pt);
  return concat(header, body);
}

async function decryptWith(state, ctr, header, metadata, body) {
  return openWith(state.aead, nonceOf(state.salt, ctr), concat(header, metadata), body);
}

/** One SFrame ciphertext (the caller never reuses (kid, ctr): prefer SFrameContext). */
export async function sframeEncrypt(kid, ctr, baseKey, metadata, plaintext, suite = DEFAULT_SUITE) {
  const k = big(kid, "KID");
  const c = big(ctr, "CTR");
  return encryptWith(await deriveState(k, baseKey, suite), k, c, bytes(metadata), bytes(plaintext));
}

/** Decrypt one SFrame ciphertext: {kid, ctr, plaintext}. lookup(kid) -> base key or undefined. */
export async function sframeDecrypt(lookup, metadata, ciphertext, suite = DEFAULT_SUITE) {
  const ct = bytes(ciphertext);
  const { kid, ctr, length } = decodeHeader(ct);
  const baseKey = typeof lookup === "function" ? lookup(kid) : lookup.get(kid);
  if (baseKey === undefined || baseKey === null) throw new UnknownKeyIdError(kid);
  const state = await deriveState(kid, baseKey, suite);
  const plaintext = await decryptWith(state, ctr, ct.subarray(0, length), bytes(metadata), ct.subarray(length));
  return { kid, ctr, plaintext };
}

// ----------------------------------------------------------------- context and replay

/** Counter-based anti-replay for one KID (RFC 9605 §9.3, after RFC 3711 §3.3.2). */
export class ReplayWindow {
  constructor(size = 128) { this.size = BigInt(size); this.highest = -1n; this.seen = 0n; }
  check(ctr) {
    if (ctr > this.highest) return;
    const delta = this.highest - ctr;
    if (delta >= this.size) throw new ReplayError(`SFrame CTR ${ctr} is older than the replay window`);
    if ((this.seen >> delta) & 1n) throw new ReplayError(`SFrame CTR ${ctr} was already received`);
  }
  accept(ctr) {
    this.check(ctr);
    const mask = (1n << this.size) - 1n;
    if (ctr > this.highest) {
      const shift = ctr - this.highest;
      this.seen = shift < this.size ? ((this.seen << shift) | 1n) & mask : 1n;
      this.highest = ctr;
    } else {
      this.seen |= 1n << (this.highest - ctr);
    }
  }
}

/**
 * An SFrame endpoint (RFC 9605 §4.4.1 key store): encryption keys with their counters,
 * decryption keys with their replay windows. A base key (bytes or an HKDF CryptoKey) is
 * installed for encryption OR decryption, once per KID; counters never repeat.
 */
export class SFrameContext {
  constructor({ suite = DEFAULT_SUITE, replayWindow = 128 } = {}) {
    params(suite);
    this.suite = suite;
    this.replayWindow = replayWindow;
    this.send = new Map(); // kid -> {state, next}
    this.receive = new Map(); // kid -> {state, window}
  }
  _checkNew(kid) {
    if (this.send.has(kid) || this.receive.has(kid)) throw new SFrameError(`SFrame KID ${kid} already has a key: a new key needs a new KID`);
  }
  async addEncryptionKey(kid, baseKey, firstCounter = 0n) {
    const k = big(kid, "KID");
    this._checkNew(k);
    const entry = { state: null, next: big(firstCounter, "CTR") };
    this.send.set(k, entry);
    try { entry.state = await deriveState(k, baseKey, this.suite); } catch (e) { this.send.delete(k); throw e; }
  }
  async addDecryptionKey(kid, baseKey) {
    const k = big(kid, "KID");
    this._checkNew(k);
    const entry = { state: null, window: new ReplayWindow(this.replayWindow) };
    this.receive.set(k, entry);
    try { entry.state = await deriveState(k, baseKey, this.suite); } catch (e) { this.receive.delete(k); throw e; }
  }
  removeKey(kid) { const k = BigInt(kid); this.send.delete(k); this.receive.delete(k); }

  /** Encrypt one frame under kid with its next counter (taken synchronously: order-safe). */
  async encrypt(kid, metadata, plaintext) {
    const k = BigInt(kid);
    const entry = this.send.get(k);
    if (!entry || !entry.state) throw new SFrameError(`no SFrame encryption key for KID ${k}`);
    const ctr = entry.next;
    if (ctr > MAX_VALUE) throw new SFrameError(`SFrame counter of KID ${k} exhausted: start a new epoch`);
    entry.next = ctr + 1n;
    return encryptWith(entry.state, k, ctr, bytes(metadata), bytes(plaintext));
  }

  /** Decrypt one frame: {kid, ctr, plaintext}; refuses replays and unknown KIDs. */
  async decrypt(metadata, ciphertext) {
    const ct = bytes(ciphertext);
    const { kid, ctr, length } = decodeHeader(ct);
    const entry = this.receive.get(kid);
    if (!entry || !entry.state) throw new UnknownKeyIdError(kid);
    entry.window.check(ctr);
    const plaintext = await decryptWith(entry.state, ctr, ct.subarray(0, length), bytes(metadata), ct.subarray(length));
    entry.window.accept(ctr); // only after authentication: forgeries cannot move the window
    return { kid, ctr, plaintext };
  }
}

// ------------------------------------------------- Encoded Transform (RTCRtpScriptTransform)

/**
 * TransformStream for the sending side: each RTCEncodedVideoFrame / RTCEncodedAudioFrame's
 * data is replaced by its SFrame ciphertext under currentKid(). A frame that cannot be
 * encrypted (no key yet, counter exhausted) is dropped and counted: nothing leaves in clear.
 * stats: {encrypted, dropped, lastError, reasons: {error name: count}}; when the caller's stats
 * object has busyUs and bytes fields, the time spent encrypting (µs) and the bytes sent add up there.
 */
export function createSenderTransform(context, currentKid, stats = { encrypted: 0, dropped: 0, lastError: "", reasons: {} }) {
  const stream = new TransformStream({
    async transform(frame, controller) {
      try {
        const start = stats.busyUs === undefined ? 0 : performance.now();
        const ct = await context.encrypt(currentKid(), EMPTY, new Uint8Array(frame.data));
        if (stats.busyUs !== undefined) { stats.busyUs += (performance.now() - start) * 1000; stats.bytes += ct.length; }
        frame.data = ct.buffer;
        stats.encrypted++;
        controller.enqueue(frame);
      } catch (e) {
        stats.dropped++;
        stats.lastError = e.name;
        stats.reasons[e.name] = (stats.reasons[e.name] ?? 0) + 1;
      }
    },
  });
  stream.stats = stats;
  return stream;
}

/**
 * TransformStream for the receiving side: frames are decrypted; any frame that fails (bad
 * header, unknown KID, replay, did not authenticate) is dropped and counted.
 * stats: {decrypted, dropped, lastError, reasons: {error name: count}} (and busyUs, bytes as
 * for the sender when the caller's stats have them). Chromium's RTP stack
 * sometimes hands the same received frame over twice (seen at the start of a stream): the
 * second copy is dropped as a ReplayError, which is harmless (reasons.ReplayError counts it).
 */
export function createReceiverTransform(context, stats = { decrypted: 0, dropped: 0, lastError: "", reasons: {} }) {
  const stream = new TransformStream({
    async transform(frame, controller) {
      try {
        const start = stats.busyUs === undefined ? 0 : performance.now();
        const { plaintext } = await context.decrypt(EMPTY, new Uint8Array(frame.data));
        if (stats.busyUs !== undefined) { stats.busyUs += (performance.now() - start) * 1000; stats.bytes += plaintext.length; }
        frame.data = plaintext.buffer.byteLength === plaintext.length ? plaintext.buffer : plaintext.slice().buffer;
        stats.decrypted++;
        controller.enqueue(frame);
      } catch (e) {
        stats.dropped++;
        stats.lastError = e.name;
        stats.reasons[e.name] = (stats.reasons[e.name] ?? 0) + 1;
      }
    },
  });
  stream.stats = stats;
  return stream;
}

// ---------------------------------------------------- Secretum key schedule and SAS

/** Ephemeral ECDH P-256 key pair for one call: {privateKey (non-extractable), publicKeyRaw}. */
export async function generateCallKeyPair() {
  const pair = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const publicKeyRaw = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, publicKeyRaw };
}

/** ECDH shared secret (x-coordinate, 32 bytes) with a peer's raw public key. */
export async function sharedSecret(privateKey, peerPublicKeyRaw) {
  const peer = await subtle.importKey("raw", bytes(peerPublicKeyRaw), { name: "ECDH", namedCurve: "P-256" }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: peer }, privateKey, 256));
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Transcript of an epoch: public keys sorted bytewise, each as length (2 bytes BE) || key. */
export function transcript(publicKeys) {
  const keys = [...publicKeys].map((k) => bytes(k)).sort(compareBytes);
  if (keys.length < 2) throw new SFrameError("an SFrame transcript needs at least two public keys");
  const parts = [];
  for (let i = 0; i < keys.length; i++) {
    if (i > 0 && compareBytes(keys[i - 1], keys[i]) === 0) throw new SFrameError("the same public key appears twice in the SFrame transcript");
    if (keys[i].length === 0 || keys[i].length >= 65536) throw new SFrameError("public key of an invalid length in the SFrame transcript");
    parts.push(beBytes(keys[i].length, 2), keys[i]);
  }
  return concat(...parts);
}

/**
 * Base key of sender senderId towards one peer in one epoch (32 bytes):
 * HKDF-SHA-512(IKM = shared secret, salt = SHA-512(transcript),
 *              info = "Secretum SFrame 1.0 base key" || 0x00 || UTF-8(senderId), L = 32).
 * Mirrors secretum.crypto.sframe.derive_base_key.
 */
export async function deriveBaseKey(shared, transcriptBytes, senderId) {
  const ikm = await subtle.importKey("raw", bytes(shared), "HKDF", false, ["deriveBits"]);
  const salt = new Uint8Array(await subtle.digest("SHA-512", bytes(transcriptBytes)));
  const info = concat(te.encode("Secretum SFrame 1.0 base key"), Uint8Array.of(0), te.encode(senderId));
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-512", salt, info }, ikm, 256));
}

/**
 * 6-digit safety code of a transcript: HKDF-SHA-512(IKM = transcript, salt = "",
 * info = "Secretum SFrame 1.0 safety code", L = 8) as a big-endian integer mod 10^6, zero
 * padded. Mirrors secretum.crypto.sframe.safety_code.
 */
export async function safetyCode(transcriptBytes) {
  const ikm = await subtle.importKey("raw", bytes(transcriptBytes), "HKDF", false, ["deriveBits"]);
  const info = te.encode("Secretum SFrame 1.0 safety code");
  const out = new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-512", salt: EMPTY, info }, ikm, 64));
  let n = 0n;
  for (const b of out) n = (n << 8n) | BigInt(b);
  return (n % 1000000n).toString().padStart(6, "0");
}
