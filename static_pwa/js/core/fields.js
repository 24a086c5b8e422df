// Field-level encryption exactly like crypto/_fields.py and schema/_vault.py: value
// tokens ("§" + class letter + base64url(version ‖ nonce ‖ ct+tag)), data keys wrapped by
// class keys, blind indexes, masks, and the normalisation of mobiles before indexing.

import { aesKey, b64url, concat, hkdf, unb64url, unwrapRaw, wrapRaw } from "./keys.js";
import { uuid5 } from "./hlc.js";

const te = new TextEncoder();
const td = new TextDecoder();
export const FIELD_VERSION = 2;
export const MARKER = "\u00a7";
export const CLASS_CODES = { confidential: "c", secret: "s", credit: "k" };
const CLASS_OF = Object.fromEntries(Object.entries(CLASS_CODES).map(([k, v]) => [v, k]));
export const DEK_NS = "3b0d7f0e-8f5e-4f7e-a7a3-6a0c2e1b9d41";
export const INDEX_BITS = 16;

/** Per table, the encrypted columns and their key class (schema/_entities.py SENSITIVE). */
export const SENSITIVE = {
  customers: { address: "confidential", mobile: "confidential", phone: "confidential",
    email: "confidential", id_number: "secret", org_code: "secret", bank_account: "secret",
    birthday: "confidential", credit_status: "credit" },
  contacts: { mobile: "confidential", phone: "confidential", email: "confidential",
    birthday: "confidential" },
  complaints: { phone: "confidential" },
};
/** Columns that carry a `<column>_bidx` blind index. */
export const BLIND_INDEXED = { customers: ["mobile", "id_number", "org_code"], contacts: ["mobile"] };

export function isToken(v) { return typeof v === "string" && v.startsWith(MARKER); }
export function tokenClass(t) { return isToken(t) ? (CLASS_OF[t.slice(1, 2)] ?? null) : null; }

function valueAad(table, column, rowId, cls) {
  return te.encode(`branchline-field|v${FIELD_VERSION}|${cls}|${table}|${column}|${rowId}`);
}

async function asKey(k) { return k instanceof CryptoKey ? k : aesKey(k); }

/** Seal one value under a customer's data key of class `cls` (crypto.encrypt_value). */
export async function encryptValue(dataKey, plaintext, { table, column, rowId, cls }) {
  const code = CLASS_CODES[cls];
  if (!code) throw new Error(`unknown key class ${cls}`);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: valueAad(table, column, rowId, cls) },
    await asKey(dataKey), te.encode(plaintext)));
  return MARKER + code + b64url(concat(new Uint8Array([FIELD_VERSION]), nonce, ct));
}

/** Open a token sealed for exactly this table, column and row (crypto.decrypt_value). */
export async function decryptValue(dataKey, token, { table, column, rowId }) {
  const cls = tokenClass(token);
  if (!cls) throw new Error("not a field ciphertext");
  const raw = unb64url(token.slice(2));
  if (raw.length < 1 + 12 + 16 || raw[0] !== FIELD_VERSION) throw new Error("unknown field ciphertext version or truncated value");
  try {
    return td.decode(await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: raw.subarray(1, 13), additionalData: valueAad(table, column, rowId, cls) },
      await asKey(dataKey), raw.subarray(13)));
  } catch { throw new Error(`${table}.${column} of ${rowId} does not decrypt`); }
}

/** A customer's data key wrapped by one version of its class key (crypto.wrap_data_key). */
export function wrapDataKey(classKey, dataKey, { customerId, cls, version }) {
  return wrapRaw(classKey, dataKey, `branchline-dek|${customerId}|${cls}|${version}`);
}

/** The raw data key of a customer for a class (crypto.unwrap_data_key). */
export function unwrapDataKey(classKey, wrapped, { customerId, cls, version }) {
  return unwrapRaw(classKey, wrapped, `branchline-dek|${customerId}|${cls}|${version}`, `data key of ${customerId} (${cls})`);
}

/** The id of a customer's data key for a class (schema/_vault.py data_key_id). */
export function dataKeyId(customerId, cls) { return uuid5(DEK_NS, `${customerId}|${cls}`); }

/** The blind-index key of one column from the index root (crypto.index_key). */
export function indexKey(root, table, column) { return hkdf(root, `branchline-bidx|${table}|${column}`); }

/** crypto.blind_index over a normalised value, with the column's derived key. */
export async function blindIndex(root, table, column, normalised, bits = INDEX_BITS) {
  const key = await crypto.subtle.importKey("raw", await indexKey(root, table, column),
    { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new DataView(await crypto.subtle.sign("HMAC", key, te.encode(normalised)));
  const value = mac.getBigUint64(0) >> BigInt(64 - bits);
  return value.toString(16).padStart(Math.floor((bits + 3) / 4), "0");
}

/** What a reader without the key sees (schema/_values.py mask). */
export function mask(column, value) {
  if (column === "mobile") {
    const digits = value.startsWith("+86") ? value.slice(3) : value.replace(/^\++/, "");
    return digits.length >= 7 ? `${digits.slice(0, 3)}****${digits.slice(-4)}` : "****";
  }
  if (column === "email") {
    const at = value.indexOf("@");
    return at >= 0 && value.slice(at + 1) ? `${value.slice(0, 1)}***@${value.slice(at + 1)}` : "***";
  }
  if (column === "id_number" || column === "org_code") {
    return value.length > 8 ? `${value.slice(0, 4)}${"*".repeat(Math.max(value.length - 8, 4))}${value.slice(-4)}` : "****";
  }
  if (column === "phone" || column === "bank_account") return value.length > 4 ? `****${value.slice(-4)}` : "****";
  if (column === "address") return `${[...value].slice(0, 6).join("")}****`;
  if (column === "birthday") return "****-**-**";
  return "***";
}

/** A mainland mobile in E.164 (+8613800001111) from the usual local forms, or null
 * (schema/_values.py normalize_mobile for Chinese numbers). */
export function normalizeMobile(value) {
  let d = String(value ?? "").replace(/[\s\-().]/g, "");
  if (d.startsWith("+86")) d = d.slice(3);
  else if (d.startsWith("0086")) d = d.slice(4);
  else if (d.startsWith("86") && d.length === 13) d = d.slice(2);
  return /^1[3-9]\d{9}$/.test(d) ? `+86${d}` : null;
}

/** Any phone in E.164 for a complaint's phone (mobile or landline with area code). */
export function normalizePhone(value) {
  const m = normalizeMobile(value);
  if (m) return m;
  let d = String(value ?? "").replace(/[\s\-().]/g, "");
  if (d.startsWith("+86")) d = d.slice(3);
  if (d.startsWith("0")) d = d.slice(1);
  return /^[1-9]\d{8,10}$/.test(d) ? `+86${d}` : null;
}

/** The key holder for one session: class keys by class and version, the current
 * version of each, and the index root; data keys unwrapped on demand and cached. */
export class Keyring {
  constructor({ classKeys = {}, current = {}, indexRoot = null } = {}) {
    this.classKeys = classKeys; // {cls: {version: Uint8Array}}
    this.current = current;
    this.indexRoot = indexRoot;
    this.deks = new Map();
  }

  holds(cls) { return cls in this.current; }

  /** Build from granted labels (`class:<cls>:<version>`, `index`) → raw keys. */
  static fromGrants(raw) {
    const ring = new Keyring();
    for (const [label, key] of Object.entries(raw)) {
      if (label === "index") { ring.indexRoot = key; continue; }
      const [kind, cls, version] = label.split(":");
      if (kind !== "class" || !/^\d+$/.test(version ?? "")) continue;
      (ring.classKeys[cls] ??= {})[Number(version)] = key;
      ring.current[cls] = Math.max(ring.current[cls] ?? 0, Number(version));
    }
    return ring;
  }

  /** The data key of `customerId` for `cls` from its `data_keys` row, or null. */
  async dataKey(row) {
    if (!row) return null;
    const cached = this.deks.get(row.id + "|" + row.key_version);
    if (cached) return cached;
    const classKey = this.classKeys[row.cls]?.[row.key_version];
    if (!classKey) return null;
    const raw = await unwrapDataKey(classKey, row.wrapped, { customerId: row.customer_id, cls: row.cls, version: row.key_version });
    const key = await aesKey(raw);
    this.deks.set(row.id + "|" + row.key_version, key);
    return key;
  }

  /** A fresh data key for a customer: [CryptoKey, the `data_keys` row values]. */
  async newDataKey(customerId, cls) {
    const version = this.current[cls];
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const wrapped = await wrapDataKey(this.classKeys[cls][version], raw, { customerId, cls, version });
    const id = await dataKeyId(customerId, cls);
    const key = await aesKey(raw);
    this.deks.set(id + "|" + version, key);
    return [key, { id, customer_id: customerId, cls, key_version: version, wrapped }];
  }

  async index(table, column, normalised) {
    if (!this.indexRoot) return null;
    return blindIndex(this.indexRoot, table, column, normalised);
  }
}
