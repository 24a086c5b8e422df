// Device keys with WebCrypto: the Ed25519 node key (signs sync requests, SPEC §1), the
// X25519 box key (class keys are granted to it like crypto.wrap_to / BoxKey.unwrap),
// and sealing the session's secrets under a password or PIN (PBKDF2 + AES-GCM).
// Private keys are generated non-extractable; IndexedDB stores the CryptoKey objects.

const te = new TextEncoder();
const subtle = crypto.subtle;
export const WRAP_VERSION = 1;
const NONCE = 12;

export function toHex(bytes) { return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join(""); }
export function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}
export function b64(bytes) {
  let s = ""; for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}
export function unb64(text) { return Uint8Array.from(atob(text), (c) => c.charCodeAt(0)); }
/** base64url without padding, as crypto/_fields.py `_b64`. */
export function b64url(bytes) { return b64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""); }
export function unb64url(text) {
  const t = text.replace(/-/g, "+").replace(/_/g, "/");
  return unb64(t + "=".repeat((4 - (t.length % 4)) % 4));
}
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0; for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
}

/** A new device identity: Ed25519 signing key and X25519 box key (private halves
 * non-extractable), with the public halves as lowercase hex of the raw 32 bytes. */
export async function generateDeviceKeys() {
  const sign = await subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const box = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  return {
    signKey: sign.privateKey,
    publicKey: toHex(await subtle.exportKey("raw", sign.publicKey)),
    boxKey: box.privateKey,
    boxPublicKey: toHex(await subtle.exportKey("raw", box.publicKey)),
  };
}

/** Base64 Ed25519 signature of `message` (bytes). */
export async function sign(privateKey, message) {
  return b64(await subtle.sign({ name: "Ed25519" }, privateKey, message));
}

/** Whether `signature` (base64) is `publicHex`'s over `message`. */
export async function verify(publicHex, signature, message) {
  try {
    const key = await subtle.importKey("raw", fromHex(publicHex), { name: "Ed25519" }, false, ["verify"]);
    return await subtle.verify({ name: "Ed25519" }, key, unb64(signature), message);
  } catch { return false; }
}

export async function sha256Hex(bytes) { return toHex(await subtle.digest("SHA-256", bytes)); }

/** What a sync request's signature covers (crypto/_signing.py request_message). */
export async function requestMessage(method, path, node, millis, body) {
  return te.encode(`branchline-sync-v1\n${method.toUpperCase()}\n${path}\n${node}\n${millis}\n${await sha256Hex(body)}`);
}

/** What a sync response's signature covers (crypto/_signing.py response_message). */
export async function responseMessage(status, node, millis, body) {
  return te.encode(`branchline-sync-v1-response\n${status}\n${node}\n${millis}\n${await sha256Hex(body)}`);
}

/** HKDF-SHA256 to 32 bytes (no salt = RFC 5869's zeros, like cryptography's HKDF). */
export async function hkdf(secret, info, salt = new Uint8Array(0)) {
  const base = await subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt, info: typeof info === "string" ? te.encode(info) : info }, base, 256));
}

export async function aesKey(raw, usages = ["encrypt", "decrypt"]) {
  return subtle.importKey("raw", raw, { name: "AES-GCM" }, false, usages);
}

/** crypto/_fields.py `_wrap`: version ‖ nonce ‖ AES-GCM(key) with `aad`, base64url. */
export async function wrapRaw(kek, key, aad) {
  const k = kek instanceof CryptoKey ? kek : await aesKey(kek);
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE));
  const ct = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: te.encode(aad) }, k, key));
  return b64url(concat(new Uint8Array([WRAP_VERSION]), nonce, ct));
}

/** crypto/_fields.py `_unwrap`. */
export async function unwrapRaw(kek, wrapped, aad, what = "key") {
  const raw = typeof wrapped === "string" ? unb64url(wrapped) : wrapped;
  if (raw.length < 1 + NONCE + 16 || raw[0] !== WRAP_VERSION) throw new Error(`${what}: unknown format or truncated`);
  const k = kek instanceof CryptoKey ? kek : await aesKey(kek);
  try {
    return new Uint8Array(await subtle.decrypt(
      { name: "AES-GCM", iv: raw.subarray(1, 1 + NONCE), additionalData: te.encode(aad) }, k, raw.subarray(1 + NONCE)));
  } catch { throw new Error(`${what} does not unwrap with this key`); }
}

/** Open a key sealed to this device by crypto.wrap_to (BoxKey.unwrap): ephemeral X25519,
 * HKDF(salt = ephemeral ‖ own public, info = "branchline-box|" label), AES-GCM. */
export async function unwrapFrom(boxPrivate, boxPublicHex, wrapped, label) {
  const raw = unb64url(wrapped);
  if (raw.length < 1 + 32 + NONCE + 16 || raw[0] !== WRAP_VERSION) throw new Error(`${label}: unknown format or truncated`);
  const ephemeral = raw.slice(1, 33);
  const peer = await subtle.importKey("raw", ephemeral, { name: "X25519" }, false, []);
  const shared = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: peer }, boxPrivate, 256));
  const kek = await hkdf(shared, `branchline-box|${label}`, concat(ephemeral, fromHex(boxPublicHex)));
  return unwrapRaw(kek, concat(new Uint8Array([WRAP_VERSION]), raw.subarray(33)), `branchline-box|${label}`, label);
}

// -- sealing secrets under a password or PIN -------------------------------------------

const PBKDF2_ROUNDS = 210000;

/** An AES-GCM key derived from a password or PIN with PBKDF2-SHA256. */
export async function deriveSecretKey(secret, salt, rounds = PBKDF2_ROUNDS) {
  const base = await subtle.importKey("raw", te.encode(secret.normalize("NFC")), "PBKDF2", false, ["deriveKey"]);
  return subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt, iterations: rounds }, base,
    { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

/** Seal bytes under a secret: {salt, rounds, nonce, ct} (all storable in IndexedDB). */
export async function sealWithSecret(secret, payload, aad = "branchline-device-session") {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const key = await deriveSecretKey(secret, salt);
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE));
  const ct = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: te.encode(aad) }, key, payload));
  return { salt, rounds: PBKDF2_ROUNDS, nonce, ct };
}

/** Open what `sealWithSecret` sealed; throws on a wrong secret. */
export async function openWithSecret(secret, sealed, aad = "branchline-device-session") {
  const key = await deriveSecretKey(secret, sealed.salt, sealed.rounds);
  try {
    return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: sealed.nonce, additionalData: te.encode(aad) }, key, sealed.ct));
  } catch { throw new Error("wrong password or PIN"); }
}
