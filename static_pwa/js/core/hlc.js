// Hybrid logical clock (sync/SPEC.md §2) as BigInt: 48 bits of Unix ms, 16 of counter;
// and the ids every node makes alike (UUIDv7 rows, UUIDv5 derived ids).

export const COUNTER_BITS = 16n;

/** Combine wall milliseconds and a counter into one clock value. */
export function pack(millis, counter = 0) {
  return (BigInt(millis) << COUNTER_BITS) | (BigInt(counter) & 0xffffn);
}

/** The wall-clock milliseconds part of a clock value. */
export function millisOf(clock) { return Number(BigInt(clock) >> COUNTER_BITS); }

/** The clock of a local event: after `last` and at least the wall clock. */
export function tick(last, wallMs = Date.now()) {
  const a = BigInt(last) + 1n;
  const b = pack(wallMs);
  return a > b ? a : b;
}

/** Move past a clock seen from another node. */
export function observe(last, remote) {
  const a = BigInt(last), b = BigInt(remote);
  return a > b ? a : b;
}

function hex(bytes) { return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(""); }
function format(b) {
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A new UUIDv7 (time-ordered, like schema.new_id). */
export function newId(now = Date.now()) {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let ms = BigInt(now);
  for (let i = 5; i >= 0; i--) { b[i] = Number(ms & 0xffn); ms >>= 8n; }
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  return format(b);
}

/** uuid.uuid5(namespace, name) exactly as Python computes it. */
export async function uuid5(namespace, name) {
  const ns = namespace.replace(/-/g, "");
  const nsBytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) nsBytes[i] = parseInt(ns.slice(i * 2, i * 2 + 2), 16);
  const nameBytes = new TextEncoder().encode(name);
  const data = new Uint8Array(16 + nameBytes.length);
  data.set(nsBytes); data.set(nameBytes, 16);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", data)).slice(0, 16);
  digest[6] = (digest[6] & 0x0f) | 0x50;
  digest[8] = (digest[8] & 0x3f) | 0x80;
  return format(digest);
}
