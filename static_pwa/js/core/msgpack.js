// MessagePack encode/decode as msgspec speaks it (sync/_wire.py, SPEC §7).
// Integers beyond Number's safe range decode to BigInt (HLC clocks are 64-bit);
// the timestamp extension (type -1), which msgspec uses for datetimes, maps to Date.

const te = new TextEncoder();
const td = new TextDecoder();

class Writer {
  constructor() { this.buf = new Uint8Array(1024); this.view = new DataView(this.buf.buffer); this.pos = 0; }
  need(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next; this.view = new DataView(next.buffer);
  }
  u8(v) { this.need(1); this.buf[this.pos++] = v; }
  u16(v) { this.need(2); this.view.setUint16(this.pos, v); this.pos += 2; }
  u32(v) { this.need(4); this.view.setUint32(this.pos, v); this.pos += 4; }
  bytes(b) { this.need(b.length); this.buf.set(b, this.pos); this.pos += b.length; }
  result() { return this.buf.slice(0, this.pos); }
}

function writeInt(w, v) {
  // v: Number (integer) or BigInt
  if (typeof v === "number") {
    if (v >= 0) {
      if (v < 128) return w.u8(v);
      if (v < 256) { w.u8(0xcc); return w.u8(v); }
      if (v < 65536) { w.u8(0xcd); return w.u16(v); }
      if (v < 4294967296) { w.u8(0xce); return w.u32(v); }
    } else {
      if (v >= -32) return w.u8(v & 0xff);
      if (v >= -128) { w.u8(0xd0); return w.u8(v & 0xff); }
      if (v >= -32768) { w.u8(0xd1); w.need(2); w.view.setInt16(w.pos, v); w.pos += 2; return; }
      if (v >= -2147483648) { w.u8(0xd2); w.need(4); w.view.setInt32(w.pos, v); w.pos += 4; return; }
    }
    v = BigInt(v);
  }
  if (v >= 0n && v < 4294967296n) return writeInt(w, Number(v));
  if (v < 0n && v >= -2147483648n) return writeInt(w, Number(v));
  w.need(9);
  if (v >= 0n) { w.buf[w.pos++] = 0xcf; w.view.setBigUint64(w.pos, v); }
  else { w.buf[w.pos++] = 0xd3; w.view.setBigInt64(w.pos, v); }
  w.pos += 8;
}

function writeLen(w, n, fix, fixMax, c8, c16, c32) {
  if (n <= fixMax && fix !== null) return w.u8(fix | n);
  if (c8 !== null && n < 256) { w.u8(c8); return w.u8(n); }
  if (n < 65536) { w.u8(c16); return w.u16(n); }
  w.u8(c32); w.u32(n);
}

function writeTimestamp(w, date) {
  const ms = date.getTime();
  const sec = Math.floor(ms / 1000);
  const nsec = (ms - sec * 1000) * 1e6;
  if (sec >= 0 && sec < 2 ** 34) {
    if (nsec === 0 && sec < 2 ** 32) { w.u8(0xd6); w.u8(0xff); w.u32(sec); return; }
    // timestamp 64: 30-bit nanoseconds, 34-bit seconds
    w.u8(0xd7); w.u8(0xff);
    const hi = nsec * 4 + Math.floor(sec / 2 ** 32);
    w.u32(hi); w.u32(sec >>> 0);
    return;
  }
  w.u8(0xc7); w.u8(12); w.u8(0xff); w.u32(nsec);
  w.need(8); w.view.setBigInt64(w.pos, BigInt(sec)); w.pos += 8;
}

function write(w, v) {
  if (v === null || v === undefined) return w.u8(0xc0);
  if (v === false) return w.u8(0xc2);
  if (v === true) return w.u8(0xc3);
  if (typeof v === "bigint") return writeInt(w, v);
  if (typeof v === "number") {
    if (Number.isInteger(v) && Number.isSafeInteger(v)) return writeInt(w, v);
    w.u8(0xcb); w.need(8); w.view.setFloat64(w.pos, v); w.pos += 8; return;
  }
  if (typeof v === "string") {
    const b = te.encode(v);
    writeLen(w, b.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
    return w.bytes(b);
  }
  if (v instanceof Date) return writeTimestamp(w, v);
  if (v instanceof Uint8Array) { writeLen(w, v.length, null, -1, 0xc4, 0xc5, 0xc6); return w.bytes(v); }
  if (Array.isArray(v)) {
    writeLen(w, v.length, 0x90, 15, null, 0xdc, 0xdd);
    for (const x of v) write(w, x);
    return;
  }
  const entries = v instanceof Map ? [...v.entries()]
    : Object.entries(v).filter(([, x]) => x !== undefined);
  writeLen(w, entries.length, 0x80, 15, null, 0xde, 0xdf);
  for (const [k, x] of entries) { write(w, k); write(w, x); }
}

/** Encode a value: objects become maps, Dates timestamps (ext -1), BigInts 64-bit ints. */
export function encode(value) {
  const w = new Writer();
  write(w, value);
  return w.result();
}

class Reader {
  constructor(bytes) {
    this.buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.pos = 0;
  }
  check(n) { if (this.pos + n > this.buf.length) throw new Error("msgpack: truncated"); }
  u8() { this.check(1); return this.buf[this.pos++]; }
  u16() { this.check(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.check(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  bytes(n) { this.check(n); const b = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return b; }
}

function big(v) { return (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)) ? Number(v) : v; }

function readExt(r, len) {
  const type = r.view.getInt8(r.pos); r.pos += 1;
  const data = r.bytes(len);
  if (type !== -1) return { ext: type, data: data.slice() };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let sec, nsec;
  if (len === 4) { sec = dv.getUint32(0); nsec = 0; }
  else if (len === 8) { const hi = dv.getUint32(0); nsec = Math.floor(hi / 4); sec = (hi & 3) * 2 ** 32 + dv.getUint32(4); }
  else if (len === 12) { nsec = dv.getUint32(0); sec = Number(dv.getBigInt64(4)); }
  else throw new Error("msgpack: bad timestamp");
  return new Date(sec * 1000 + Math.floor(nsec / 1e6));
}

function read(r) {
  const b = r.u8();
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 256;
  if ((b & 0xf0) === 0x80) return readMap(r, b & 0x0f);
  if ((b & 0xf0) === 0x90) return readArray(r, b & 0x0f);
  if ((b & 0xe0) === 0xa0) return td.decode(r.bytes(b & 0x1f));
  let v;
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.bytes(r.u8()).slice();
    case 0xc5: return r.bytes(r.u16()).slice();
    case 0xc6: return r.bytes(r.u32()).slice();
    case 0xc7: return readExt(r, r.u8());
    case 0xc8: return readExt(r, r.u16());
    case 0xc9: return readExt(r, r.u32());
    case 0xca: r.check(4); v = r.view.getFloat32(r.pos); r.pos += 4; return v;
    case 0xcb: r.check(8); v = r.view.getFloat64(r.pos); r.pos += 8; return v;
    case 0xcc: return r.u8();
    case 0xcd: return r.u16();
    case 0xce: return r.u32();
    case 0xcf: r.check(8); v = r.view.getBigUint64(r.pos); r.pos += 8; return big(v);
    case 0xd0: r.check(1); v = r.view.getInt8(r.pos); r.pos += 1; return v;
    case 0xd1: r.check(2); v = r.view.getInt16(r.pos); r.pos += 2; return v;
    case 0xd2: r.check(4); v = r.view.getInt32(r.pos); r.pos += 4; return v;
    case 0xd3: r.check(8); v = r.view.getBigInt64(r.pos); r.pos += 8; return big(v);
    case 0xd4: return readExt(r, 1);
    case 0xd5: return readExt(r, 2);
    case 0xd6: return readExt(r, 4);
    case 0xd7: return readExt(r, 8);
    case 0xd8: return readExt(r, 16);
    case 0xd9: return td.decode(r.bytes(r.u8()));
    case 0xda: return td.decode(r.bytes(r.u16()));
    case 0xdb: return td.decode(r.bytes(r.u32()));
    case 0xdc: return readArray(r, r.u16());
    case 0xdd: return readArray(r, r.u32());
    case 0xde: return readMap(r, r.u16());
    case 0xdf: return readMap(r, r.u32());
    default: throw new Error(`msgpack: unknown byte 0x${b.toString(16)}`);
  }
}

function readArray(r, n) { const out = new Array(n); for (let i = 0; i < n; i++) out[i] = read(r); return out; }
function readMap(r, n) {
  const out = {};
  for (let i = 0; i < n; i++) { const k = read(r); out[String(k)] = read(r); }
  return out;
}

/** Decode one MessagePack value (maps become plain objects). */
export function decode(bytes) {
  const r = new Reader(bytes);
  const v = read(r);
  if (r.pos !== r.buf.length) throw new Error("msgpack: trailing bytes");
  return v;
}
