#!/usr/bin/env node
'use strict';
// multiput (Node, WASM core) against popular Node memcached clients, in one run:
// memjs (binary protocol) and memcached (node-memcached, text protocol), plus a raw-socket
// floor. Workloads: sequential get, sequential set (100-byte values), sequential getMulti of
// 100 keys, and 64 concurrent gets. Each workload runs unpinned and pinned (client and
// memcached on CPU 0 with `taskset -c 0`, which shows a client's own CPU cost; see
// DESIGN.md "Performance facts").
//
//   node bench/bench.js                 # both placements, 3 rounds of ~1 s per case
//   node bench/bench.js --seconds 3 --rounds 5
//
// Clients run one after another in rounds (each round runs every client once) and each cell
// is the best of the rounds: load from elsewhere on the machine (other jobs pinned to CPU 0)
// only ever slows a case down, so the best round is the closest to the client's own cost.
//   BENCH_ONLY=multiput,memjs node bench/bench.js
//
// Needs `npm ci` in wasm/js (memjs, memcached are devDependencies), memcached and taskset.
// Numbers move ±25% run to run on these machines: compare ratios within one run.

const { spawn, spawnSync } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const SECONDS = Number(arg('--seconds', '1'));
const ROUNDS = Number(arg('--rounds', '3'));
const VALUE = Buffer.alloc(100, 'x');
const MULTI = 100;
const CONCURRENCY = 64;

// ---- clients under test: each gives get(key), set(key, value), getMulti(keys), close() ----

function multiputClient(port) {
  const { Client } = require('..');
  const c = new Client([`127.0.0.1:${port}`]);
  return { get: (k) => c.get(k), set: (k, v) => c.set(k, v), getMulti: (ks) => c.getMulti(ks), close: () => c.close() };
}

function memjsClient(port) {
  const memjs = require('memjs');
  const c = memjs.Client.create(`127.0.0.1:${port}`, { logger: { log() {} }, retries: 0 });
  const get = (k) => new Promise((resolve, reject) => c.get(k, (e, v) => (e ? reject(e) : resolve(v))));
  return {
    get,
    set: (k, v) => new Promise((resolve, reject) => c.set(k, v, { expires: 0 }, (e, ok) => (e ? reject(e) : resolve(ok)))),
    // memjs 1.3 has no multi-get: 100 gets at once, pipelined on its one connection.
    getMulti: (ks) => Promise.all(ks.map(get)),
    close: () => c.close(),
  };
}

function memcachedClient(port) {
  const Memcached = require('memcached');
  const c = new Memcached(`127.0.0.1:${port}`, { retries: 0, timeout: 1000, poolSize: 1 });
  return {
    get: (k) => new Promise((resolve, reject) => c.get(k, (e, v) => (e ? reject(e) : resolve(v)))),
    set: (k, v) => new Promise((resolve, reject) => c.set(k, v, 0, (e, ok) => (e ? reject(e) : resolve(ok)))),
    getMulti: (ks) => new Promise((resolve, reject) => c.getMulti(ks, (e, v) => (e ? reject(e) : resolve(v)))),
    close: () => c.end(),
  };
}

/** The floor: one socket, text protocol, replies parsed just enough to count them. */
function rawClient(port) {
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.setNoDelay(true);
  const waiters = [];
  let buf = '';
  sock.setEncoding('latin1');
  sock.on('data', (d) => {
    buf += d;
    for (;;) {
      const w = waiters[0];
      if (!w) return;
      const end = buf.indexOf(w.until);
      if (end < 0) return;
      waiters.shift();
      const reply = buf.slice(0, end + w.until.length);
      buf = buf.slice(end + w.until.length);
      w.resolve(reply);
    }
  });
  const ask = (req, until) => new Promise((resolve) => {
    waiters.push({ resolve, until });
    sock.write(req);
  });
  return {
    get: (k) => ask(`get ${k}\r\n`, 'END\r\n'),
    set: (k, v) => ask(`set ${k} 0 0 ${v.length}\r\n${v.toString('latin1')}\r\n`, 'STORED\r\n'),
    getMulti: (ks) => ask(`get ${ks.join(' ')}\r\n`, 'END\r\n'),
    close: () => sock.destroy(),
  };
}

const CLIENTS = { raw: rawClient, multiput: multiputClient, memjs: memjsClient, memcached: memcachedClient };

// ---- workloads ----

async function timed(fn) {
  const end = performance.now() + SECONDS * 1000;
  let ops = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) ops += await fn(ops + i);
  }
  return ops / ((performance.now() - start) / 1000);
}

async function runClient(name, port) {
  const c = CLIENTS[name](port);
  const keys = Array.from({ length: 1000 }, (_, i) => `bench:${i}`);
  for (const k of keys) await c.set(k, VALUE);
  // Warm up (and check the answers once).
  const v = await c.get(keys[1]);
  if (!v || v.length < 100) throw new Error(`${name}: get returned ${v}`);
  const m = await c.getMulti(keys.slice(0, MULTI));
  const hits = m instanceof Map ? m.size : Array.isArray(m) ? m.filter(Boolean).length : typeof m === 'string' ? MULTI : Object.keys(m).length;
  if (hits !== MULTI) throw new Error(`${name}: getMulti returned ${hits} hits`);
  const out = {};
  out.get = await timed(async (i) => {
    await c.get(keys[i % 1000]);
    return 1;
  });
  out.set = await timed(async (i) => {
    await c.set(keys[i % 1000], VALUE);
    return 1;
  });
  const groups = Array.from({ length: 10 }, (_, g) => keys.slice(g * MULTI, (g + 1) * MULTI));
  out.getMulti100 = await timed(async (i) => {
    await c.getMulti(groups[i % 10]);
    return 1;
  });
  out.get64 = await timed(async (i) => {
    const ps = [];
    for (let j = 0; j < CONCURRENCY; j++) ps.push(c.get(keys[(i * CONCURRENCY + j) % 1000]));
    await Promise.all(ps);
    return CONCURRENCY;
  });
  c.close();
  return out;
}

// ---- orchestration: one memcached per placement, one child process per client ----

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startMemcached(pinned) {
  const port = await freePort();
  const mc = ['memcached', '-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64', '-t', '1'];
  if (process.getuid && process.getuid() === 0) mc.push('-u', 'root');
  const cmd = pinned ? ['taskset', '-c', '0', ...mc] : mc;
  const proc = spawn(cmd[0], cmd.slice(1), { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return { port, proc };
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('memcached did not start');
}

function child(name, port, pinned) {
  const cmd = [process.execPath, __filename, '--child', name, '--port', String(port), '--seconds', String(SECONDS)];
  const full = pinned ? ['taskset', '-c', '0', ...cmd] : cmd;
  const r = spawnSync(full[0], full.slice(1), { encoding: 'utf8', cwd: path.join(__dirname, '..') });
  if (r.status !== 0) throw new Error(`${name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function fmt(n) {
  return n >= 10000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}

async function main() {
  if (args.includes('--child')) {
    const out = await runClient(arg('--child'), Number(arg('--port')));
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const only = process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',') : Object.keys(CLIENTS);
  const rows = [];
  const cols = ['get', 'set', 'getMulti100', 'get64'];
  const best = (xs) => Math.max(...xs);
  for (const pinned of [false, true]) {
    const mc = await startMemcached(pinned);
    try {
      const runs = new Map(only.map((n) => [n, []]));
      for (let round = 0; round < ROUNDS; round++) {
        for (const name of only) runs.get(name).push(child(name, mc.port, pinned));
      }
      for (const name of only) {
        const row = { placement: pinned ? 'pinned' : 'unpinned', client: name };
        for (const c of cols) row[c] = best(runs.get(name).map((r) => r[c]));
        rows.push(row);
      }
    } finally {
      mc.proc.kill('SIGKILL');
    }
  }
  const load = require('node:os').loadavg()[0].toFixed(2);
  console.log(`node ${process.version}, best of ${ROUNDS} rounds of ${SECONDS}s per case, load ${load}; ops/s (getMulti100: calls/s of 100 keys; get64: gets/s with 64 in flight)`);
  console.log(['placement', 'client', ...cols].map((c) => c.padEnd(11)).join(' '));
  for (const r of rows) {
    console.log([r.placement, r.client, ...cols.map((c) => fmt(r[c]))].map((c) => String(c).padEnd(11)).join(' '));
  }
  for (const placement of ['unpinned', 'pinned']) {
    const mp = rows.find((r) => r.client === 'multiput' && r.placement === placement);
    if (!mp) continue;
    for (const other of rows.filter((r) => r.placement === placement && r.client !== 'multiput')) {
      console.log(`${placement}: multiput / ${other.client}: ${cols.map((c) => `${c} ${(mp[c] / other[c]).toFixed(2)}x`).join(', ')}`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
