#!/usr/bin/env node
// Baseline (b): load customer records into a local PouchDB (leveldb), then time
// PouchDB.replicate(local, remote) to a pouchdb-server over loopback.
//
//   node replicate.js --jsonl FILE --remote http://127.0.0.1:PORT/customers \
//        --dir LOCALDIR [--mode embedded|separate] [--batch-size 100]
//
// Input: one {"customer": {...}, "contacts": [{...}, ...]} per line (bench/dataset.py).
// mode=embedded: one doc per customer, its contacts in a `contacts` array (how PouchDB
//   users model it; the main figure).
// mode=separate: one doc per customer and one per contact (closer to our rows).
// Prints one JSON object on stdout. Only the replication is timed; loading the local
// database is timed separately as load_s.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const PouchDB = require('pouchdb');

const LOAD_BATCH = 5000;

function parseArgs(argv) {
  const args = { mode: 'embedded', batchSize: 100 };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-(.)/g, (_, c) => c.toUpperCase());
    args[key] = argv[i + 1];
  }
  args.batchSize = Number(args.batchSize);
  if (!args.jsonl || !args.remote || !args.dir) throw new Error('need --jsonl --remote --dir');
  if (!['embedded', 'separate'].includes(args.mode)) throw new Error(`bad --mode ${args.mode}`);
  return args;
}

function docsFor(record, mode) {
  const { id, ...customer } = record.customer;
  if (mode === 'embedded') {
    return [{ _id: id, type: 'customer', ...customer, contacts: record.contacts }];
  }
  return [
    { _id: id, type: 'customer', ...customer },
    ...record.contacts.map(({ id: cid, ...contact }) => ({ _id: cid, type: 'contact', ...contact })),
  ];
}

async function load(db, file, mode) {
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  let batch = [];
  let docs = 0;
  let customers = 0;
  const flush = async () => {
    const results = await db.bulkDocs(batch);
    const failed = results.filter((r) => r.error);
    if (failed.length) throw new Error(`bulkDocs failed: ${JSON.stringify(failed[0])}`);
    docs += batch.length;
    batch = [];
  };
  for await (const line of lines) {
    if (!line) continue;
    batch.push(...docsFor(JSON.parse(line), mode));
    customers += 1;
    if (batch.length >= LOAD_BATCH) await flush();
  }
  if (batch.length) await flush();
  return { docs, customers };
}

async function main() {
  const args = parseArgs(process.argv);
  const local = new PouchDB(path.join(args.dir, 'local'));
  const remote = new PouchDB(args.remote);
  await remote.info(); // creates the remote database

  let start = process.hrtime.bigint();
  const { docs, customers } = await load(local, args.jsonl, args.mode);
  const loadS = Number(process.hrtime.bigint() - start) / 1e9;

  start = process.hrtime.bigint();
  const result = await PouchDB.replicate(local, remote, { batch_size: args.batchSize });
  const replicateS = Number(process.hrtime.bigint() - start) / 1e9;

  const remoteInfo = await remote.info();
  if (result.docs_written !== docs || remoteInfo.doc_count !== docs) {
    throw new Error(`replicated ${result.docs_written}, remote has ${remoteInfo.doc_count}, ` +
                    `expected ${docs}`);
  }
  await local.close();
  const version = (name) => require(`${name}/package.json`).version;
  process.stdout.write(JSON.stringify({
    mode: args.mode,
    docs,
    customers,
    batch_size: args.batchSize,
    load_s: loadS,
    replicate_s: replicateS,
    docs_per_s: docs / replicateS,
    customers_per_s: customers / replicateS,
    docs_written: result.docs_written,
    client_peak_rss_kb: process.resourceUsage().maxRSS,
    node: process.version,
    pouchdb: version('pouchdb'),
    pouchdb_server: version('pouchdb-server'),
  }) + '\n');
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
