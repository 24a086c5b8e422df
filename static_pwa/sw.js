// Service worker of the Branchline web app (scope /). It keeps the app shell — the
// HTML, CSS, every ES module and the icons — in a versioned cache, so a reload with no
// network still opens the app; customer data lives only in IndexedDB (js/core/store.js),
// never here: /api/, /sync/, /schema and /health always go to the network and are
// never cached.
//
// The node serving this file stamps VERSION with a digest of the shell it serves
// (server/api/pwa.py): a changed shell is a new worker, which caches the new shell on
// install and deletes older caches on activate, so all modules move together.

const VERSION = 'dev';
const CACHE = `branchline-shell-${VERSION}`;

const SHELL = [
  '/', '/index.html', '/manifest.webmanifest',
  '/css/app.css',
  '/icons/icon.svg', '/icons/icon-192.png', '/icons/icon-512.png', '/icons/icon-maskable-512.png',
  '/js/app.js', '/js/i18n.js',
  '/js/ui/api.js', '/js/ui/dom.js', '/js/ui/screen.js', '/js/ui/status-bar.js',
  '/js/ui/session-screens.js', '/js/ui/customers.js', '/js/ui/forms.js', '/js/ui/work.js',
  '/js/ui/signature-pad.js', '/js/ui/manager.js', '/js/ui/charts.js',
  '/js/core/msgpack.js', '/js/core/hlc.js', '/js/core/keys.js', '/js/core/fields.js',
  '/js/core/store.js', '/js/core/sync.js', '/js/core/data.js', '/js/core/session.js',
];

/** Paths that carry data or are dynamic: network only, never cached. */
const NETWORK_ONLY = /^\/(api|sync|schema|health)(\/|$)/;
/** Static files the shell may pull in later (runtime-cached on first use). */
const STATIC = /\.(js|css|png|svg|webmanifest|woff2?)$/;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // One by one, so a module another release dropped does not fail the whole install;
    // the core and UI modules are all listed, so an offline start has every import.
    const results = await Promise.allSettled(SHELL.map(async (url) => {
      const res = await fetch(new Request(url, { cache: 'reload' }));
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      await cache.put(url, res);
    }));
    for (const r of results) if (r.status === 'rejected') console.warn('shell not cached', r.reason);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((n) => n.startsWith('branchline-') && n !== CACHE)
      .map((n) => caches.delete(n)));
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (NETWORK_ONLY.test(url.pathname)) return; // the browser fetches it; nothing cached
  if (req.mode === 'navigate') {
    // Every page of the app is index.html with a hash route.
    event.respondWith((async () => {
      const cache = await caches.open(CACHE);
      const hit = await cache.match('/index.html') || await cache.match('/');
      if (hit) return hit;
      return fetch(req);
    })());
    return;
  }
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(url.pathname);
    if (hit) return hit;
    const res = await fetch(req);
    if (res.ok && STATIC.test(url.pathname)) await cache.put(url.pathname, res.clone());
    return res;
  })());
});
