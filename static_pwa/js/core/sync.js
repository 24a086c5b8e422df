// The device as a leaf node of the sync protocol (sync/SPEC.md §1, §7, §13, §20):
// local writes become rows stamped with the device's clock and id and wait in the
// outbox; a round pushes them (signed, uncompressed MessagePack), then pulls the
// upstream's batches and stores its row state, with unacknowledged writes on top.

import { decode, encode } from "./msgpack.js";
import { observe, tick } from "./hlc.js";
import { requestMessage, responseMessage, sign, verify } from "./keys.js";
import * as store from "./store.js";

export const PROTOCOL = 1;
export const SCHEMA = 1;
const PUSH_PAGE = 200;
const PULL_LIMIT = 1000;

// -- events ---------------------------------------------------------------------------
const listeners = new Map();
/** Subscribe to `change`, `sync`, `locked`, `wiped`, `unlocked`; returns an unsubscribe. */
export function on(event, cb) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(cb);
  return () => listeners.get(event).delete(cb);
}
export function emit(event, detail) {
  for (const cb of listeners.get(event) ?? []) { try { cb(detail); } catch (e) { console.error(e); } }
}

// -- merge metadata the device needs for its own writes -------------------------------
export const COMPLAINT_STATES = ["received", "declined", "accepted", "assigned", "investigated",
  "reviewed", "replied", "closed", "return_visited"];
export const TICKET_STATES = ["undispatched", "dispatched", "confirmed", "done"];
const STATES = {
  "complaints.status": COMPLAINT_STATES, "tickets.status": TICKET_STATES,
  "customers.filing_status": ["registered", "filed", "archived"],
  "credit_requests.status": ["requested", "rejected", "approved", "shipped"],
};
const FIRST_WRITE = new Set(["customers.owner_id", "customers.registered_at", "customers.merged_into",
  "point_entries.posted_at", "point_entries.posted_by"]);
const COUNTERS = new Set(["customers.points"]);
const SETS = new Set(["customers.tags"]);
/** Tables whose rows follow a customer (SPEC §9); evicting a customer drops them. */
export const CHILDREN = ["contacts", "field_history", "conflicts", "change_requests", "data_keys",
  "destruction_records", "read_audit", "customer_merges", "handovers", "class_overrides",
  "class_changes", "visits", "complaints", "tickets", "purchases", "credit_requests",
  "reception_expenses", "access_requests"];

export function stateRank(cycle, position) { return (cycle << 8) | position; }
function customerOf(tbl, values, id) {
  if (tbl === "customers") return id;
  return values.customer_id ?? values.member_id ?? null;
}
function big(v) { return typeof v === "bigint" ? v : BigInt(v); }

// -- device identity and clock --------------------------------------------------------
let identity = null; // {nodeId, signKey, upstreamPublicKey, upstreamNodeId, hqNodeId, branch}
export function setIdentity(id) { identity = id; }
export function getIdentity() { return identity; }

async function nextClock(meta) {
  const last = (await store.get(meta, "clock")) ?? 0n;
  const c = tick(big(last));
  await store.put(meta, c, "clock");
  return c;
}

// -- local writes ---------------------------------------------------------------------

/** Insert a row of `tbl` written by this device: stamped, stored, queued. `values`
 * holds every column the row is created with (no `id`). Returns the stored values. */
export async function localInsert(tbl, id, values) {
  const node = identity.nodeId;
  return store.tx(["rows", "outbox", "meta"], "readwrite", async (s) => {
    const clock = await nextClock(s.meta);
    const cells = {};
    const wireCells = [];
    const tallies = {};
    const wireTallies = [];
    for (const [col, val] of Object.entries(values)) {
      const states = STATES[`${tbl}.${col}`];
      if (states && val != null) {
        const rank = stateRank(0, states.indexOf(val));
        if (rank) { cells[col] = { clock, origin: node, rank, lineage: null }; wireCells.push({ col, val, clock, origin: node, rank, lineage: null }); }
      }
      if (COUNTERS.has(`${tbl}.${col}`) && val) {
        const n = Number(val);
        tallies[col] = { [node]: [Math.max(0, n), Math.max(0, -n)] };
        wireTallies.push({ col, node, inc: Math.max(0, n), dec: Math.max(0, -n) });
      }
    }
    const record = { tbl, id, customer: customerOf(tbl, values, id), values: { ...values }, cl: 1, clock,
      origin: node, cells, tallies, members: {}, pending: 1 };
    await store.put(s.rows, record);
    await store.put(s.outbox, { tbl, id, row: { cl: 1, clock, origin: node, values: { ...values }, cells: wireCells, tallies: wireTallies } });
    return record.values;
  }).then((v) => { emit("change", { tbl, id }); return v; });
}

/** Change fields of a row held here (SPEC §3: a cell per field with a fresh clock and
 * the lineage seen). `newCycle` names state / first_write fields starting a new cycle.
 * Returns the row's values after the change. */
export async function localUpdate(tbl, id, changes, { newCycle = [] } = {}) {
  const node = identity.nodeId;
  return store.tx(["rows", "outbox", "meta"], "readwrite", async (s) => {
    const record = await store.get(s.rows, [tbl, id]);
    if (!record || record.cl % 2 === 0) throw new Error(`${tbl} ${id} not found`);
    const changed = Object.fromEntries(Object.entries(changes).filter(([k, v]) => !same(record.values[k], v)));
    if (!Object.keys(changed).length) return record.values;
    if ("updated_at" in record.values || tbl !== "visits") changed.updated_at = new Date(roundMs(Date.now()));
    const wireCells = [];
    for (const [col, val] of Object.entries(changed)) {
      const key = `${tbl}.${col}`;
      if (COUNTERS.has(key) || SETS.has(key)) throw new Error(`${key} cannot be set directly`);
      const cur = record.cells[col] ?? { clock: record.clock, origin: record.origin, rank: 0, lineage: null };
      const seen = cur.lineage ? { ...cur.lineage } : { [cur.origin]: cur.clock };
      let rank = 0;
      if (STATES[key]) {
        const pos = STATES[key].indexOf(val);
        if (pos < 0) throw new Error(`${col} has no state ${val}`);
        const cycle = cur.rank >> 8;
        if (newCycle.includes(col)) rank = stateRank(cycle + 1, pos);
        else if (pos < (cur.rank & 0xff)) throw new Error(`${col} cannot go back to ${val} without re-opening`);
        else rank = stateRank(cycle, pos);
      } else if (FIRST_WRITE.has(key)) {
        if (record.values[col] != null && !newCycle.includes(col)) throw new Error(`${col} was set first elsewhere`);
        rank = cur.rank + 1;
      }
      const clock = await nextClock(s.meta);
      const lineage = { ...seen, [node]: clock > big(seen[node] ?? -1) ? clock : big(seen[node]) };
      const compact = Object.keys(lineage).length === 1 && lineage[node] === clock ? null : lineage;
      record.cells[col] = { clock, origin: node, rank, lineage: compact };
      record.values[col] = val;
      wireCells.push({ col, val, clock, origin: node, rank, lineage: compact });
    }
    record.pending = (record.pending ?? 0) + 1;
    await store.put(s.rows, record);
    await store.put(s.outbox, { tbl, id, row: { cl: record.cl, clock: record.clock, origin: record.origin, values: null, cells: wireCells, tallies: [] } });
    return record.values;
  }).then((v) => { emit("change", { tbl, id }); return v; });
}

/** Add `delta` to a counter (customers.points): this device's own tally grows. */
export async function localIncrement(tbl, id, col, delta) {
  const node = identity.nodeId;
  return store.tx(["rows", "outbox", "meta"], "readwrite", async (s) => {
    const record = await store.get(s.rows, [tbl, id]);
    if (!record || record.cl % 2 === 0) throw new Error(`${tbl} ${id} not found`);
    const mine = record.tallies[col]?.[node] ?? [0, 0];
    const next = delta >= 0 ? [mine[0] + delta, mine[1]] : [mine[0], mine[1] - delta];
    (record.tallies[col] ??= {})[node] = next;
    record.values[col] = counterValue(record.tallies[col]);
    // updated_at is an lww cell like any other (schema/_uow.py increment).
    const clock = await nextClock(s.meta);
    const cur = record.cells.updated_at ?? { clock: record.clock, origin: record.origin, rank: 0, lineage: null };
    const seen = cur.lineage ? { ...cur.lineage } : { [cur.origin]: cur.clock };
    const lineage = { ...seen, [node]: clock };
    const compact = Object.keys(lineage).length === 1 ? null : lineage;
    const now = new Date(roundMs(Date.now()));
    record.cells.updated_at = { clock, origin: node, rank: 0, lineage: compact };
    record.values.updated_at = now;
    record.pending = (record.pending ?? 0) + 1;
    await store.put(s.rows, record);
    await store.put(s.outbox, { tbl, id, row: { cl: record.cl, clock: record.clock, origin: record.origin, values: null,
      cells: [{ col: "updated_at", val: now, clock, origin: node, rank: 0, lineage: compact }],
      tallies: [{ col, node, inc: next[0], dec: next[1] }] } });
    return record.values;
  }).then((v) => { emit("change", { tbl, id }); return v; });
}

function counterValue(perNode) { return Object.values(perNode).reduce((n, [i, d]) => n + Number(i) - Number(d), 0); }
function setValue(perElem) {
  return Object.entries(perElem).filter(([, nodes]) => Object.values(nodes).some(([a, r]) => big(a) > big(r))).map(([e]) => e).sort();
}
export function roundMs(ms) { return Math.floor(ms); }
function same(a, b) {
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (Array.isArray(a) && Array.isArray(b)) return JSON.stringify([...a].map(String).sort()) === JSON.stringify([...b].map(String).sort());
  return a === b || (a == null && b == null);
}

// -- the wire -------------------------------------------------------------------------

/** Outbox entries as one `batch` message (SPEC §7): nodes interned, columns per table. */
export function buildBatch(entries, { sender, more = false }) {
  const nodes = [];
  const index = (n) => { let i = nodes.indexOf(n); if (i < 0) { i = nodes.length; nodes.push(n); } return i; };
  const columns = {};
  for (const e of entries) {
    if (e.row.values) {
      const cols = (columns[e.tbl] ??= []);
      for (const c of Object.keys(e.row.values)) if (c !== "id" && !cols.includes(c)) cols.push(c);
    }
  }
  const rows = entries.map((e) => {
    const r = e.row;
    const values = r.values ? (columns[e.tbl]).map((c) => (r.values[c] === undefined ? null : r.values[c])) : null;
    return [e.tbl, e.id, r.cl, big(r.clock), index(r.origin), values,
      r.cells.map((c) => [c.col, c.val ?? null, big(c.clock), index(c.origin), c.rank, c.lineage ?? null]),
      r.tallies.map((t) => [t.col, index(t.node), t.inc, t.dec]), []];
  });
  const last = entries.length ? entries[entries.length - 1].seq : 0;
  return { type: "batch", protocol: PROTOCOL, schema: SCHEMA, sender, nodes, columns, rows,
    cursor: String(last), more, evictions: [], reset: false, entered: [] };
}

export class SyncError extends Error {
  constructor(message, status, revoked = false) { super(message); this.status = status; this.revoked = revoked; }
}

/** POST a signed protocol message; returns the decoded, signature-checked reply. */
export async function signedPost(path, message, { base = "", fetchImpl = fetch } = {}) {
  const body = encode(message);
  const millis = Date.now();
  const signature = await sign(identity.signKey, await requestMessage("POST", path, identity.nodeId, millis, body));
  const response = await fetchImpl(base + path, { method: "POST", body, headers: {
    "content-type": "application/msgpack", "x-branchline-node": identity.nodeId,
    "x-branchline-time": String(millis), "x-branchline-signature": signature,
    "x-branchline-accept-encoding": "identity" } });
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (!response.ok) {
    let reason = `HTTP ${response.status}`;
    try {
      const text = new TextDecoder().decode(bytes);
      try { const j = JSON.parse(text); reason = j.detail ?? j.reason ?? text; } catch { reason = text || reason; }
    } catch { /* binary */ }
    if (response.headers.get("content-type")?.includes("msgpack")) {
      try { const m = decode(bytes); if (m?.reason) reason = m.reason; } catch { /* not msgpack */ }
    }
    throw new SyncError(String(reason), response.status, response.status === 403 && /revoked/i.test(String(reason)));
  }
  if ((response.headers.get("x-branchline-encoding") ?? "identity") !== "identity") {
    throw new SyncError("the node answered compressed; it does not serve devices yet", response.status);
  }
  if (identity.upstreamPublicKey) {
    const ok = await verify(identity.upstreamPublicKey, response.headers.get("x-branchline-signature") ?? "",
      await responseMessage(response.status, identity.upstreamNodeId, response.headers.get("x-branchline-time") ?? "", bytes));
    if (!ok) throw new SyncError("reply not signed by the upstream node", response.status);
  }
  const reply = decode(bytes);
  if (reply?.type === "refusal") throw new SyncError(reply.reason, 403, /revoked/i.test(reply.reason));
  return reply;
}

// -- applying pulled batches ----------------------------------------------------------

function applyRow(record, row, batch) {
  const [tbl, id, cl, clock, origin, values, cells = [], tallies = [], members = []] = row;
  const nodes = batch.nodes;
  if (record && cl < record.cl) return record;
  if (cl % 2 === 0) return { tbl, id, customer: record?.customer ?? null, values: {}, cl, clock, origin: nodes[origin], cells: {}, tallies: {}, members: {}, pending: record?.pending ?? 0, deleted: true };
  if (values) {
    const cols = batch.columns[tbl] ?? [];
    const v = Object.fromEntries(cols.map((c, i) => [c, values[i]]));
    record = { tbl, id, customer: null, values: v, cl, clock, origin: nodes[origin], cells: {}, tallies: {}, members: {}, pending: record?.pending ?? 0 };
  } else if (!record) {
    return null; // a partial row for a row never held: wait for it whole
  }
  record.cl = cl;
  for (const [col, val, cclock, corigin, rank, lineage] of cells) {
    record.values[col] = val;
    record.cells[col] = { clock: cclock, origin: nodes[corigin], rank, lineage: lineage ?? null };
  }
  for (const [col, node, inc, dec] of tallies) {
    const per = (record.tallies[col] ??= {});
    const old = per[nodes[node]] ?? [0, 0];
    per[nodes[node]] = [Math.max(Number(old[0]), Number(inc)), Math.max(Number(old[1]), Number(dec))];
  }
  for (const col of Object.keys(record.tallies)) record.values[col] = counterValue(record.tallies[col]);
  for (const [col, elem, node, added, removed] of members) {
    const per = ((record.members[col] ??= {})[elem] ??= {});
    const old = per[nodes[node]] ?? [0n, 0n];
    per[nodes[node]] = [big(added) > big(old[0]) ? big(added) : big(old[0]), big(removed) > big(old[1]) ? big(removed) : big(old[1])];
  }
  for (const col of Object.keys(record.members)) record.values[col] = setValue(record.members[col]);
  record.customer = customerOf(tbl, record.values, id);
  return record;
}

function overlay(record, entries) {
  for (const e of entries) {
    if (e.row.values && (!record.values || record.deleted)) continue;
    if (e.row.values) Object.assign(record.values, e.row.values);
    for (const c of e.row.cells) record.values[c.col] = c.val;
  }
  record.pending = entries.length;
  return record;
}

/** Apply one pulled batch and move the cursor, in one transaction (SPEC §13). */
export async function applyBatch(batch) {
  let maxClock = 0n;
  const touched = [];
  await store.tx(["rows", "outbox", "meta"], "readwrite", async (s) => {
    if (batch.reset) {
      for (const r of await store.all(s.rows)) if (!r.pending) await store.del(s.rows, [r.tbl, r.id]);
    }
    for (const row of batch.rows) {
      const [tbl, id] = row;
      const before = await store.get(s.rows, [tbl, id]);
      let record = applyRow(before ? structuredClone(before) : null, row, batch);
      if (!record) continue;
      const c = big(row[3]);
      if (c > maxClock) maxClock = c;
      for (const cell of row[6] ?? []) if (big(cell[2]) > maxClock) maxClock = big(cell[2]);
      const pending = await store.all(s.outbox.index("row"), [tbl, id]);
      if (pending.length) record = overlay(record, pending);
      if (record.deleted && !pending.length) await store.del(s.rows, [tbl, id]);
      else await store.put(s.rows, record);
      touched.push({ tbl, id });
    }
    for (const [tbl, id] of batch.evictions ?? []) {
      await store.del(s.rows, [tbl, id]);
      if (tbl === "customers") {
        for (const child of CHILDREN) {
          for (const r of await store.all(s.rows.index("customer"), [child, id])) await store.del(s.rows, [child, r.id]);
        }
      }
    }
    const last = (await store.get(s.meta, "clock")) ?? 0n;
    await store.put(s.meta, observe(big(last), maxClock), "clock");
    await store.put(s.meta, batch.cursor, "pulled");
  });
  if (touched.length || (batch.evictions ?? []).length) emit("change", { rows: touched.length });
  return touched.length;
}

// -- rounds -----------------------------------------------------------------------------

const status = { lastSync: null, lastError: null, running: false };
export function syncStatus() { return { ...status }; }
let base = "";
/** The node to sync with (default: the origin that served the app). */
export function setBase(url) { base = url.replace(/\/$/, ""); }

/** Push the outbox page by page, then pull until `more` is false (SPEC §13). */
export async function round() {
  if (!identity) throw new SyncError("this device is not enrolled", 0);
  let pushed = 0, pulled = 0;
  for (;;) {
    const entries = (await store.outbox()).slice(0, PUSH_PAGE + 1);
    if (!entries.length) break;
    const page = entries.slice(0, PUSH_PAGE);
    const batch = buildBatch(page, { sender: identity.nodeId, more: entries.length > PUSH_PAGE });
    const ack = await signedPost("/sync/v1/push", { type: "push", protocol: PROTOCOL, schema: SCHEMA, node: identity.nodeId, batch }, { base });
    if (ack?.type !== "ack") throw new SyncError(`unexpected reply ${ack?.type}`, 0);
    const upto = Number(ack.cursor);
    const problems = new Map((ack.quarantined ?? []).map(([tbl, id, reason]) => [`${tbl}|${id}`, reason]));
    await store.tx(["rows", "outbox", "meta"], "readwrite", async (s) => {
      for (const e of page) {
        if (e.seq > upto) continue;
        await store.del(s.outbox, e.seq);
        const record = await store.get(s.rows, [e.tbl, e.id]);
        if (record) {
          record.pending = Math.max(0, (record.pending ?? 1) - 1);
          const reason = problems.get(`${e.tbl}|${e.id}`);
          if (reason) record.quarantined = reason;
          await store.put(s.rows, record);
        }
      }
      await store.put(s.meta, String(upto), "pushed");
    });
    pushed += page.length;
  }
  for (;;) {
    const cursor = (await store.getMeta("pulled")) ?? "";
    const batch = await signedPost("/sync/v1/pull", { type: "pull", protocol: PROTOCOL, schema: SCHEMA, node: identity.nodeId, cursor, limit: PULL_LIMIT }, { base });
    if (batch?.type !== "batch") throw new SyncError(`unexpected reply ${batch?.type}`, 0);
    pulled += await applyBatch(batch);
    if (!batch.more) break;
  }
  return { pushed, pulled };
}

let revokedHandler = null;
/** What to do when the upstream says this device is revoked (session.js wipes). */
export function onRevoked(cb) { revokedHandler = cb; }

let inflight = null;
/** One sync round now (joins a round already running). */
export function syncNow() {
  if (inflight) return inflight;
  inflight = (async () => {
    status.running = true;
    try {
      const result = await round();
      status.lastSync = new Date();
      status.lastError = null;
      emit("sync", { ok: true, ...result });
      return result;
    } catch (e) {
      status.lastError = e.message ?? String(e);
      emit("sync", { ok: false, error: status.lastError });
      if (e.revoked && revokedHandler) await revokedHandler(e.message);
      return { error: status.lastError };
    } finally { status.running = false; inflight = null; }
  })();
  return inflight;
}

let timer = null;
/** Sync on reconnect, on focus and every `everyMs` (60 s). */
export function startTriggers(everyMs = 60000) {
  if (timer || typeof window === "undefined") return;
  const go = () => { if (identity && navigator.onLine !== false) syncNow(); };
  window.addEventListener("online", go);
  window.addEventListener("focus", go);
  timer = setInterval(go, everyMs);
  stopTriggers = () => { window.removeEventListener("online", go); window.removeEventListener("focus", go); clearInterval(timer); timer = null; };
}
export let stopTriggers = () => {};
