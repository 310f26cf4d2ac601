// In-call chat and files over an RTCDataChannel, end to end: every message is sealed with
// AES-256-GCM under a key of the sending direction derived from the call's ECDH secret (the
// same secrets as the media keys, another HKDF label), never sent through the server.
//
// Wire format of one data-channel message (binary):
//   version (1 byte, 1) || KID (4 bytes BE, the sender's SFrame KID of the epoch) ||
//   sequence (8 bytes BE, per key, strictly increasing) || nonce (12 random bytes) || ciphertext
// The first 13 bytes are the associated data: a message moved to another epoch, replayed,
// reordered or altered does not open (the receiver refuses sequences it has seen).
// Plaintext: 0x01 || UTF-8 JSON ({t:"text", body} | {t:"file", id, name, size, chunks})
//         or 0x02 || file id (16 bytes) || chunk index (4 bytes BE) || chunk bytes.

const subtle = globalThis.crypto.subtle;
const te = new TextEncoder();
const td = new TextDecoder();
const HEADER = 13;
export const CHUNK = 16 * 1024;
export const MAX_FILE = 25 * 1024 * 1024;
export const MAX_TEXT = 4000;

/** AES-256-GCM key of sender senderId: HKDF-SHA-512(shared, SHA-512(transcript), "Secretum chat 1.0" 0 id). */
export async function deriveChatKey(shared, transcriptBytes, senderId, usages) {
  const ikm = await subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  const salt = new Uint8Array(await subtle.digest("SHA-512", transcriptBytes));
  const label = te.encode("Secretum chat 1.0");
  const id = te.encode(senderId);
  const info = new Uint8Array(label.length + 1 + id.length);
  info.set(label);
  info.set(id, label.length + 1);
  return subtle.deriveKey({ name: "HKDF", hash: "SHA-512", salt, info }, ikm, { name: "AES-GCM", length: 256 }, false, usages);
}

function header(kid, seq) {
  const h = new Uint8Array(HEADER);
  const v = new DataView(h.buffer);
  h[0] = 1;
  v.setUint32(1, kid);
  v.setBigUint64(5, BigInt(seq));
  return h;
}

/** Sealing side of one direction: {kid, key} of the current epoch, a counter. */
export class ChatSealer {
  constructor(kid, key) { this.kid = kid; this.key = key; this.seq = 0n; }
  async seal(plaintext) {
    const h = header(this.kid, this.seq++);
    const nonce = globalThis.crypto.getRandomValues(new Uint8Array(12));
    const ct = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: h }, this.key, plaintext));
    const out = new Uint8Array(HEADER + 12 + ct.length);
    out.set(h);
    out.set(nonce, HEADER);
    out.set(ct, HEADER + 12);
    return out;
  }
}

/** Opening side: keys by KID (the previous epoch's stay until removed), replay refused. */
export class ChatOpener {
  constructor() { this.keys = new Map(); }
  add(kid, key) { this.keys.set(kid, { key, next: 0n }); }
  remove(kid) { this.keys.delete(kid); }
  async open(data) {
    const d = new Uint8Array(data);
    if (d.length < HEADER + 12 + 16 || d[0] !== 1) throw new Error("chat message malformed");
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const entry = this.keys.get(v.getUint32(1));
    if (!entry) throw new Error("chat message under an unknown key");
    const seq = v.getBigUint64(5);
    if (seq < entry.next) throw new Error("chat message replayed or reordered");
    const pt = await subtle.decrypt({ name: "AES-GCM", iv: d.subarray(HEADER, HEADER + 12), additionalData: d.subarray(0, HEADER) }, entry.key, d.subarray(HEADER + 12));
    entry.next = seq + 1n; // only once authentic: a forgery cannot move the window
    return new Uint8Array(pt);
  }
}

export function encodeJson(object) {
  const body = te.encode(JSON.stringify(object));
  const out = new Uint8Array(1 + body.length);
  out[0] = 1;
  out.set(body, 1);
  return out;
}

export function encodeChunk(fileId, index, bytes) {
  const out = new Uint8Array(1 + 16 + 4 + bytes.length);
  out[0] = 2;
  out.set(fileId, 1);
  new DataView(out.buffer).setUint32(17, index);
  out.set(bytes, 21);
  return out;
}

/** {kind: "json", value} | {kind: "chunk", id (hex), index, bytes}. */
export function decode(plaintext) {
  if (plaintext[0] === 1) return { kind: "json", value: JSON.parse(td.decode(plaintext.subarray(1))) };
  if (plaintext[0] === 2 && plaintext.length >= 21) {
    const id = Array.from(plaintext.subarray(1, 17), (b) => b.toString(16).padStart(2, "0")).join("");
    const index = new DataView(plaintext.buffer, plaintext.byteOffset).getUint32(17);
    return { kind: "chunk", id, index, bytes: plaintext.slice(21) };
  }
  throw new Error("chat message of an unknown kind");
}
