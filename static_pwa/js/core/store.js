// IndexedDB for one device: `rows` (the replica: upstream state plus local writes on
// top), `outbox` (own writes not yet acknowledged, in order), `meta` (cursor, clock,
// node identity incl. CryptoKey objects, sealed session).

const DB_NAME = "branchline-device";
const VERSION = 1;
let dbPromise = null;

function req(r) {
  return new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
}

/** The open database (created on first use). */
export function open() {
  if (dbPromise) return dbPromise;
  dbPromise = new Promise((resolve, reject) => {
    const r = indexedDB.open(DB_NAME, VERSION);
    r.onupgradeneeded = () => {
      const db = r.result;
      const rows = db.createObjectStore("rows", { keyPath: ["tbl", "id"] });
      rows.createIndex("tbl", "tbl");
      rows.createIndex("customer", ["tbl", "customer"]);
      const out = db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
      out.createIndex("row", ["tbl", "id"]);
      db.createObjectStore("meta");
    };
    r.onsuccess = () => {
      const db = r.result;
      db.onversionchange = () => { db.close(); dbPromise = null; };
      resolve(db);
    };
    r.onerror = () => reject(r.error);
    r.onblocked = () => reject(new Error("the device database is open elsewhere"));
  });
  return dbPromise;
}

/** Run `work(stores)` in one transaction over `names`; resolves after commit. */
export async function tx(names, mode, work) {
  const db = await open();
  const t = db.transaction(names, mode);
  const stores = Object.fromEntries(names.map((n) => [n, t.objectStore(n)]));
  const done = new Promise((resolve, reject) => {
    t.oncomplete = () => resolve(); t.onerror = () => reject(t.error); t.onabort = () => reject(t.error ?? new Error("aborted"));
  });
  let result;
  try { result = await work(stores, t); } catch (e) { try { t.abort(); } catch { /* already done */ } await done.catch(() => {}); throw e; }
  await done;
  return result;
}

export const get = (store, key) => req(store.get(key));
export const put = (store, value, key) => req(key === undefined ? store.put(value) : store.put(value, key));
export const del = (store, key) => req(store.delete(key));
export const all = (source, query) => req(source.getAll(query));

export async function getMeta(key) { return tx(["meta"], "readonly", (s) => get(s.meta, key)); }
export async function setMeta(key, value) { return tx(["meta"], "readwrite", (s) => put(s.meta, value, key)); }
export async function delMeta(key) { return tx(["meta"], "readwrite", (s) => del(s.meta, key)); }

/** One row record {tbl, id, customer, values, cl, clock, origin, cells, tallies, members, pending}. */
export async function getRow(tbl, id) { return tx(["rows"], "readonly", (s) => get(s.rows, [tbl, id])); }
export async function rowsOf(tbl) { return tx(["rows"], "readonly", (s) => all(s.rows.index("tbl"), tbl)); }
export async function rowsOfCustomer(tbl, customerIds) {
  return tx(["rows"], "readonly", async (s) => {
    const out = [];
    for (const c of customerIds) out.push(...await all(s.rows.index("customer"), [tbl, c]));
    return out;
  });
}
export async function outbox() { return tx(["outbox"], "readonly", (s) => all(s.outbox)); }
export async function outboxCount() { return tx(["outbox"], "readonly", (s) => req(s.outbox.count())); }

/** Delete the whole device database (logout, revocation). */
export async function wipe() {
  if (dbPromise) { (await dbPromise).close(); dbPromise = null; }
  await new Promise((resolve, reject) => {
    const r = indexedDB.deleteDatabase(DB_NAME);
    r.onsuccess = () => resolve(); r.onerror = () => reject(r.error); r.onblocked = () => resolve();
  });
}
