// Login, device enrolment, unlock with password or PIN, idle lock, logout and
// revocation wipe. The bearer token and the key grants are sealed in IndexedDB under a
// key derived from the password (and, once set, from the PIN); class keys exist only in
// memory while unlocked.

import { generateDeviceKeys, openWithSecret, sealWithSecret, unwrapFrom } from "./keys.js";
import { Keyring } from "./fields.js";
import * as store from "./store.js";
import * as sync from "./sync.js";

const te = new TextEncoder();
const td = new TextDecoder();
const PIN_TRIES = 5;
let base = "";
let device = null;   // the `device` meta record (ids, CryptoKeys, upstream)
let unlocked = null; // {token, user, keyring}
let idleMs = 5 * 60 * 1000;
let idleTimer = null;

/** Point the session (and sync) at a node other than the app's origin. */
export function setBase(url) { base = url.replace(/\/$/, ""); sync.setBase(base); }

async function api(method, path, body, token) {
  const r = await fetch(base + path, { method, headers: { "content-type": "application/json",
    ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!r.ok) {
    const e = new Error(data?.detail ?? `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

function bindDevice(d) {
  device = d;
  sync.setIdentity(d ? { nodeId: d.nodeId, signKey: d.signKey, upstreamNodeId: d.upstreamNodeId,
    upstreamPublicKey: d.upstreamPublicKey, hqNodeId: d.hqNodeId, branch: d.branch } : null);
}

async function open(payload) {
  const grants = {};
  for (const g of [...(payload.grants ?? []), ...(payload.index_grant ? [payload.index_grant] : [])]) {
    try { grants[g.label] = await unwrapFrom(device.boxKey, device.boxPublicKey, g.wrapped, g.label); }
    catch (e) { console.warn(`grant ${g.label} does not open`, e); }
  }
  unlocked = { token: payload.token, user: payload.user, keyring: Keyring.fromGrants(grants) };
  touch();
  sync.emit("unlocked", state());
}

/** Restore the device after a reload: enrolled → locked, waiting for unlock. */
export async function restore() {
  const d = await store.getMeta("device");
  bindDevice(d ?? null);
  if (d) sync.startTriggers();
  return state();
}

/** Log in online, enrol this device (again: picks up new key versions), seal the
 * session under the password, unlock and start syncing. */
export async function login(username, password) {
  const result = await api("POST", "/api/v1/auth/login", { username, password });
  let d = await store.getMeta("device");
  if (d && d.userId !== result.user.id) { await wipe("another user logged in"); d = null; }
  let keys = d;
  if (!keys) {
    const fresh = await generateDeviceKeys();
    keys = { signKey: fresh.signKey, publicKey: fresh.publicKey, boxKey: fresh.boxKey, boxPublicKey: fresh.boxPublicKey };
  }
  const enrolled = await api("POST", "/api/v1/devices", {
    name: `${result.user.display_name ?? username} · ${navigator.userAgent.slice(0, 40)}`,
    public_key: keys.publicKey, box_public_key: keys.boxPublicKey }, result.token);
  d = { ...keys, nodeId: enrolled.node_id, branch: enrolled.branch, userId: enrolled.user_id ?? result.user.id,
    role: enrolled.role ?? result.user.role, upstreamNodeId: enrolled.upstream_node_id,
    upstreamPublicKey: enrolled.upstream_public_key, hqNodeId: enrolled.hq_node_id };
  const payload = { token: result.token, user: result.user, grants: enrolled.grants ?? [], index_grant: enrolled.index_grant ?? null };
  const bytes = te.encode(JSON.stringify(payload));
  const sealed = await sealWithSecret(password, bytes);
  await store.setMeta("device", d);
  await store.setMeta("sealed:password", sealed);
  if (await store.getMeta("sealed:pin")) await store.delMeta("sealed:pin"); // a PIN seals a stale session
  bindDevice(d);
  await open(payload);
  unlocked.raw = bytes;
  sync.startTriggers();
  // The first round right away: an online sign-in brings the user's share at once
  // (not on the next focus or timer tick). Not awaited: the app opens meanwhile.
  sync.syncNow().catch(() => {});
  return state();
}

/** Set a PIN (while unlocked) that unlocks this device offline. */
export async function setPin(pin) {
  if (!unlocked) throw new Error("unlock first");
  if (!/^\d{4,12}$/.test(String(pin))) throw new Error("a PIN is 4 to 12 digits");
  const password = await store.getMeta("sealed:password");
  if (!password) throw new Error("log in online first");
  // Seal what the password seal holds (token and wrapped grants), not opened keys.
  await store.setMeta("sealed:pin", await sealWithSecret(String(pin), unlocked.raw));
  await store.setMeta("pin-tries", 0);
}

/** Unlock with the password or the PIN (offline). Wrong PINs count; after 5 the PIN
 * is dropped and only the password unlocks. */
export async function unlock(secret) {
  if (!device) throw new Error("this device is not enrolled; log in online");
  const password = await store.getMeta("sealed:password");
  const pin = await store.getMeta("sealed:pin");
  let raw = null;
  try { raw = await openWithSecret(String(secret), password); } catch { /* maybe the PIN */ }
  if (!raw && pin) {
    try { raw = await openWithSecret(String(secret), pin); await store.setMeta("pin-tries", 0); }
    catch {
      const tries = ((await store.getMeta("pin-tries")) ?? 0) + 1;
      if (tries >= PIN_TRIES) { await store.delMeta("sealed:pin"); await store.delMeta("pin-tries"); }
      else await store.setMeta("pin-tries", tries);
    }
  }
  if (!raw) throw new Error("wrong password or PIN");
  await open(JSON.parse(td.decode(raw)));
  unlocked.raw = raw;
  return state();
}

/** Forget the keys and token in memory; data stays (encrypted fields stay tokens). */
export function lock() {
  if (!unlocked) return;
  unlocked = null;
  clearTimeout(idleTimer);
  sync.emit("locked", state());
}

/** Note user activity (defers the idle lock). */
export function touch() {
  clearTimeout(idleTimer);
  if (unlocked && idleMs > 0) idleTimer = setTimeout(lock, idleMs);
}

/** Lock after `ms` without activity (0: never). */
export function setIdleTimeout(ms) { idleMs = ms; touch(); }

if (typeof window !== "undefined") {
  for (const ev of ["pointerdown", "keydown", "touchstart"]) window.addEventListener(ev, () => { if (unlocked) touch(); }, { passive: true });
}

/** Erase everything this device holds (logout, revocation). */
export async function wipe(reason = "logout") {
  sync.stopTriggers();
  unlocked = null;
  clearTimeout(idleTimer);
  bindDevice(null);
  await store.wipe();
  sync.emit("wiped", { reason });
}

/** Log out: revoke this device upstream when online (best effort), then wipe. */
export async function logout() {
  if (unlocked && device) {
    try { await api("POST", `/api/v1/devices/${device.nodeId}/revoke`, { reason: "logout" }, unlocked.token); }
    catch { /* offline: the wipe still happens */ }
  }
  await wipe("logout");
}

sync.onRevoked((reason) => wipe(`revoked: ${reason}`));

/** {user, role, branch, locked, online, nodeId, enrolled} */
export function state() {
  return { user: unlocked?.user ?? null, role: unlocked?.user?.role ?? device?.role ?? null,
    branch: device?.branch ?? unlocked?.user?.branch ?? null, locked: !unlocked,
    online: typeof navigator === "undefined" ? true : navigator.onLine, nodeId: device?.nodeId ?? null,
    enrolled: !!device };
}

/** For data.js: the unlocked session (token, user, keyring) or null. */
export function current() { return unlocked; }
export function deviceInfo() { return device; }
