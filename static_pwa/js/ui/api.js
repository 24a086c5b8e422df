// The one place the UI meets the device core (js/core/data.js, js/core/session.js) and
// the node's REST API. Screens import only this module, so a renamed core function is
// a one-line change here. The core is loaded with dynamic import() so that a missing or
// broken core module still lets the shell render (with an error) instead of a blank page.

let data = null;
let session = null;
let store = null;
let loadError = null;

/** Load the core modules once; resolves even if they fail (see `coreError`). */
export async function loadCore() {
  if (data || loadError) return;
  try {
    [data, session, store] = await Promise.all([
      import('../core/data.js'), import('../core/session.js'), import('../core/store.js')]);
    // After a reload an enrolled device comes back locked (keys only in memory).
    if (typeof session.restore === 'function') await session.restore();
  } catch (e) {
    loadError = e;
    console.error('device core failed to load', e);
  }
}

/** The error that stopped the core from loading, or null. */
export function coreError() { return loadError; }

function fn(mod, ...names) {
  for (const m of [mod, mod?.default, mod?.session]) {
    for (const n of names) if (m && typeof m[n] === 'function') return m[n].bind(m);
  }
  return null;
}

function call(names, ...args) {
  const f = fn(data, ...names) || fn(session, ...names) || fn(data?.session, ...names);
  if (!f) throw new Error(`core: ${names[0]} is not available`);
  return f(...args);
}

function maybe(names, fallback, ...args) {
  const f = fn(data, ...names) || fn(session, ...names);
  return f ? f(...args) : fallback;
}

// -- session --------------------------------------------------------------------------
export const login = (u, p) => call(['login'], u, p);
export const setPin = (pin) => call(['setPin'], pin);
export const unlock = (secret) => call(['unlock'], secret);
export const lock = () => call(['lock']);
export const logout = () => call(['logout']);
/** {user, role, branch, locked, online, nodeId} or null before any login. */
export async function state() {
  if (!data && !session) return null;
  try { return await call(['state']); } catch (e) { console.warn(e); return null; }
}

// -- reads (local store, work offline) ------------------------------------------------
export const searchCustomers = (q, opts = { limit: 50 }) => call(['searchCustomers'], q, opts);
export const getCustomer = (id) => call(['getCustomer'], id);
export const customerVisits = (id) => maybe(['customerVisits'], [], id);
export const customerComplaints = (id) => maybe(['customerComplaints'], [], id);
export const customerTickets = (id) => maybe(['customerTickets'], [], id);
/** Points balance of a customer (the archive's `points` counter), or null. */
export async function customerPoints(id) {
  const f = fn(data, 'customerPoints', 'pointsBalance');
  if (f) return f(id);
  const c = await getCustomer(id);
  return c?.points ?? null;
}
export const getComplaint = (id) => call(['getComplaint'], id);

// Lists and rows data.js does not offer (yet): read straight from the local store. Only
// columns that are never encrypted are shown from these (numbers, states, deadlines).
async function localRows(tbl) {
  if (!store?.rowsOf) return [];
  const rows = await store.rowsOf(tbl);
  return rows.filter((r) => !r.deleted && (r.cl == null || r.cl % 2 === 1))
    .map((r) => ({ id: r.id, ...r.values, pending: (r.pending ?? 0) > 0, quarantined: r.quarantined ?? null }));
}
const newestFirst = (key) => (a, b) => String(b[key] ?? b.id).localeCompare(String(a[key] ?? a.id));
function withFlags(c) {
  const running = !['declined', 'closed', 'return_visited'].includes(c.status);
  return { ...c, overdue: c.overdue ?? (running && Date.now() > new Date(c.deadline_at).getTime()) };
}
export async function getTicket(id) {
  const f = fn(data, 'getTicket');
  if (f) return f(id);
  return (await localRows('tickets')).find((r) => r.id === id) ?? null;
}
export async function listComplaints(opts = {}) {
  const f = fn(data, 'listComplaints');
  if (f) return f(opts);
  return (await localRows('complaints')).map(withFlags).sort(newestFirst('received_at')).slice(0, 200);
}
export async function listTickets(opts = {}) {
  const f = fn(data, 'listTickets');
  if (f) return f(opts);
  return (await localRows('tickets')).sort(newestFirst('created_at')).slice(0, 200);
}
/** Active price-list items (reference data) for completing a ticket. */
export async function priceItems() {
  const f = fn(data, 'priceItems', 'priceList');
  if (f) return f();
  return (await localRows('price_items')).filter((r) => r.active !== false)
    .sort((a, b) => String(a.code).localeCompare(String(b.code)));
}
/** Users and departments this device holds (reference data), for pickers. */
export async function localUsers() {
  return (await localRows('users')).filter((u) => u.active !== false)
    .map((u) => ({ id: u.id, name: u.display_name || u.username, role: u.role, department: u.department }))
    .sort((a, b) => String(a.name).localeCompare(String(b.name), 'zh-CN'));
}
export async function localDepartments() {
  return (await localRows('departments')).map((d) => d.name || d.code).filter(Boolean);
}

/** Let the core lock after `minutes` idle (its own timer). False if it has none. */
export function setIdleMinutes(minutes) {
  const f = fn(session, 'setIdleTimeout');
  if (!f) return false;
  f(minutes * 60_000);
  return true;
}

// -- writes (outbox) ------------------------------------------------------------------
export const recordVisit = (cid, v) => call(['recordVisit'], cid, v);
export const registerCustomer = (v) => call(['registerCustomer'], v);
export const logComplaint = (v) => call(['logComplaint'], v);
export const complaintAction = (id, action, d) => call(['complaintAction'], id, action, d);
export const createTicket = (v) => call(['createTicket'], v);
export const ticketAction = (id, action, d) => call(['ticketAction'], id, action, d);
export const redeemPoints = (cid, pts, note) => call(['redeemPoints'], cid, pts, note);

// -- sync status ----------------------------------------------------------------------
const EMPTY = { pending: 0, lastSync: null, lastError: null, online: navigator.onLine };
export async function status() {
  try { return (await maybe(['status'], EMPTY)) || EMPTY; } catch { return EMPTY; }
}
export async function isPending(tbl, id) {
  try { return Boolean(await maybe(['isPending'], false, tbl, id)); } catch { return false; }
}
export async function conflicts(tbl, id) {
  try { return (await maybe(['conflicts'], [], tbl, id)) || []; } catch { return []; }
}
export const syncNow = () => maybe(['syncNow'], Promise.resolve(), {});
/** Subscribe to core events: change, sync, locked, wiped. */
export function on(event, cb) {
  const f = fn(data, 'on') || fn(session, 'on');
  if (f) f(event, cb);
}

// -- REST (online-only manager screens) -----------------------------------------------
async function bearer() {
  const direct = fn(session, 'token', 'bearer') || fn(data, 'token', 'bearer');
  if (direct) return await direct();
  const cur = fn(session, 'current');
  if (cur) return cur()?.token ?? null;
  const s = await state();
  return s?.token ?? null;
}

/** An API failure: `status` is the HTTP status (0 offline), message one line. */
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Call the node's REST API with the session's bearer token; JSON in and out. */
export async function rest(path, { method = 'GET', body, query } = {}) {
  const f = fn(data, 'apiFetch', 'rest') || fn(session, 'apiFetch', 'rest');
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v != null && v !== '') url.searchParams.set(k, String(v));
  }
  if (f) return f(url.pathname + url.search, { method, body });
  if (!navigator.onLine) throw new ApiError(0, 'offline');
  const token = await bearer();
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, { method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) { throw new ApiError(0, 'offline'); }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    const msg = json?.detail || json?.title || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, String(msg).split('\n')[0]);
  }
  return json;
}
