'use strict';
// Conformance runner (tests/conformance/README.md): every scenario of every
// tests/conformance/*.json file, run by the Node client against fresh memcached processes
// started here (127.0.0.1, free ports, -U 0, default memory) and stopped by PID.
//
// A scenario listed under "node" in tests/conformance/known-gaps.json must fail (its failure is
// printed as a diagnostic); one that is listed and passes fails ("remove it from
// known-gaps.json"); one that is not listed must pass.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { Client, DELETE } = require('..');
const { REPO, freePort } = require('../support/harness');

const LANG = 'node';
const DIR = path.join(REPO, 'tests', 'conformance');
const GAPS_FILE = 'known-gaps.json';

const KINDS = new Set([
  'InvalidKey', 'ValueTooLarge', 'NotStored', 'Exists', 'NotFound', 'Server', 'Client',
  'Timeout', 'ConnectionRefused', 'ConnectionClosed', 'ServerDown', 'Protocol', 'Unsupported',
  'Replication', 'CasRetriesExhausted', 'LockNotAcquired', 'Loader', 'Config',
]);
const UNAVAILABLE = new Set(['Timeout', 'ConnectionRefused', 'ConnectionClosed', 'ServerDown']);

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
/** A few turns of the event loop (pending socket events are handled), no timer. */
async function settle() {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

// ---- scenario files -----------------------------------------------------------------------

/** Every scenario of every tests/conformance/*.json (but known-gaps.json), with its file. */
function loadScenarios() {
  const files = fs
    .readdirSync(DIR)
    .filter((f) => f.endsWith('.json') && f !== GAPS_FILE)
    .sort();
  const scenarios = [];
  const problems = [];
  const seen = new Map();
  for (const file of files) {
    let doc;
    try {
      doc = JSON.parse(fs.readFileSync(path.join(DIR, file), 'utf8'));
    } catch (e) {
      problems.push(`${file}: not JSON: ${e.message}`);
      continue;
    }
    if (!doc || !Array.isArray(doc.scenarios)) {
      problems.push(`${file}: no "scenarios" array`);
      continue;
    }
    for (const sc of doc.scenarios) {
      if (!sc || typeof sc.name !== 'string' || sc.name === '') {
        problems.push(`${file}: a scenario without a name`);
        continue;
      }
      if (seen.has(sc.name)) {
        problems.push(`scenario name "${sc.name}" is in both ${seen.get(sc.name)} and ${file}`);
        continue;
      }
      seen.set(sc.name, file);
      scenarios.push({ file, scenario: sc });
    }
  }
  return { files, scenarios, problems };
}

function loadGaps() {
  const p = path.join(DIR, GAPS_FILE);
  if (!fs.existsSync(p)) return [];
  const doc = JSON.parse(fs.readFileSync(p, 'utf8'));
  const list = doc[LANG] ?? [];
  if (!Array.isArray(list)) throw new Error(`${GAPS_FILE}: "${LANG}" is not a list`);
  return list;
}

// ---- memcached processes --------------------------------------------------------------------

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

class Server {
  constructor(port) {
    this.port = port;
    this.proc = null;
    this.exited = null;
  }

  get address() {
    return `127.0.0.1:${this.port}`;
  }

  get running() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Start on this.port; false if the process exited (port taken) or never answered. */
  async tryStart() {
    const args = ['-l', '127.0.0.1', '-p', String(this.port), '-U', '0'];
    if (typeof process.getuid === 'function' && process.getuid() === 0) args.unshift('-u', 'root');
    const proc = spawn('memcached', args, { stdio: 'ignore' });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.once('error', () => {});
    for (let i = 0; i < 300; i++) {
      if (proc.exitCode !== null || proc.signalCode !== null) break;
      if (await canConnect(this.port)) {
        proc.unref();
        return true;
      }
      await sleep(10);
    }
    await this.kill();
    return false;
  }

  async kill() {
    const proc = this.proc;
    if (proc !== null && proc.exitCode === null && proc.signalCode === null) {
      proc.ref();
      try {
        process.kill(proc.pid, 'SIGCONT'); // a stopped process is killed all the same; be sure
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        // it exited meanwhile
      }
      await this.exited;
    }
    this.proc = null;
  }

  async stop() {
    if (!this.running) throw new Error(`server ${this.address} is not running`);
    process.kill(this.proc.pid, 'SIGSTOP');
    for (let i = 0; i < 500; i++) {
      let stopped = true;
      for (const task of fs.readdirSync(`/proc/${this.proc.pid}/task`)) {
        let stat = '';
        try {
          stat = fs.readFileSync(`/proc/${this.proc.pid}/task/${task}/stat`, 'latin1');
        } catch {
          continue;
        }
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        if (state !== 'T' && state !== 't') stopped = false;
      }
      if (stopped) return;
      await sleep(5);
    }
    throw new Error(`server ${this.address} did not stop`);
  }

  cont() {
    if (!this.running) throw new Error(`server ${this.address} is not running`);
    process.kill(this.proc.pid, 'SIGCONT');
  }

  /** A fresh, empty memcached on the same port (after a kill). */
  async restart() {
    await this.kill();
    for (let attempt = 0; attempt < 100; attempt++) {
      if (await this.tryStart()) return;
      await sleep(20);
    }
    throw new Error(`memcached did not restart on port ${this.port}`);
  }
}

async function startServers(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      let started = null;
      for (let attempt = 0; attempt < 10 && started === null; attempt++) {
        const s = new Server(await freePort());
        if (await s.tryStart()) started = s;
      }
      if (started === null) throw new Error('memcached did not start');
      servers.push(started);
    }
  } catch (e) {
    for (const s of servers) await s.kill();
    throw e;
  }
  return servers;
}

// ---- raw text protocol (bypasses the client) -----------------------------------------------

/** One request, the reply once `complete(buf)` says it is whole (bounded by 2 s). */
function rawExchange(port, request, complete) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`raw request to port ${port} got no whole reply within 2 s`));
    }, 2000);
    s.on('connect', () => s.write(request));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (complete(buf)) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const lineDone = (b) => b.indexOf('\r\n') >= 0;

/** The bytes stored under `key` on one server, or null. */
async function rawGet(port, key) {
  const parse = (b) => {
    const head = b.indexOf('\r\n');
    if (head < 0) return undefined;
    const line = b.subarray(0, head).toString('latin1');
    if (line === 'END') return null;
    const m = /^VALUE \S+ \d+ (\d+)/.exec(line);
    if (!m) throw new Error(`raw get ${key}: unexpected reply ${JSON.stringify(line)}`);
    const len = Number(m[1]);
    if (b.length < head + 2 + len + 2 + 5) return undefined; // data \r\n END\r\n
    return b.subarray(head + 2, head + 2 + len);
  };
  const b = await rawExchange(port, `get ${key}\r\n`, (x) => {
    try {
      return parse(x) !== undefined;
    } catch {
      return true;
    }
  });
  return parse(b);
}

async function rawSet(port, key, data, flags) {
  const head = Buffer.from(`set ${key} ${flags} 0 ${data.length}\r\n`);
  const r = await rawExchange(port, Buffer.concat([head, data, Buffer.from('\r\n')]), lineDone);
  if (r.toString('latin1') !== 'STORED\r\n') throw new Error(`raw set ${key}: ${JSON.stringify(r.toString('latin1'))}`);
}

async function rawDelete(port, key) {
  const r = (await rawExchange(port, `delete ${key}\r\n`, lineDone)).toString('latin1');
  if (r !== 'DELETED\r\n' && r !== 'NOT_FOUND\r\n') throw new Error(`raw delete ${key}: ${JSON.stringify(r)}`);
}

// ---- values, variables, comparison ----------------------------------------------------------

/** A failure of the scenario (not of a call): wrong expectation, bad file, binding gap. */
class ScenarioFailure extends Error {}

const VAR = /^\$([A-Za-z_][A-Za-z0-9_]*)$/;

/** `{"repeat": "x", "times": n}`: a long value, built here. */
function isRepeat(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const keys = Object.keys(v).sort();
  return keys.length === 2 && keys[0] === 'repeat' && keys[1] === 'times' && typeof v.repeat === 'string' && Number.isInteger(v.times) && v.times >= 0 && v.times <= 64 * 1024 * 1024;
}

/** Replace "$name" (also inside arrays and objects) by the variable's value, and build repeats. */
function resolve(vars, v) {
  if (typeof v === 'string') {
    const m = VAR.exec(v);
    if (m === null) return v;
    if (!vars.has(m[1])) throw new ScenarioFailure(`variable $${m[1]} is not set`);
    return vars.get(m[1]);
  }
  if (Array.isArray(v)) return v.map((x) => resolve(vars, x));
  if (isRepeat(v)) return v.repeat.repeat(v.times);
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(vars, x)]));
  }
  return v;
}

/** A result in the README's terms: bytes as UTF-8 text, Maps as objects, safe bigints as numbers. */
function normalize(v) {
  if (v === undefined) return null;
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (v instanceof Map) {
    const o = {};
    for (const [k, x] of v) o[normalize(k)] = normalize(x);
    return o;
  }
  if (Array.isArray(v)) return v.map(normalize);
  return v;
}

function show(v) {
  if (v === undefined) return 'undefined';
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return `bytes ${JSON.stringify(Buffer.from(v).toString('latin1'))}`;
  return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : Buffer.isBuffer(x) ? x.toString('utf8') : x));
}

/** Does the normalised `actual` equal `expected` (a JSON value)? */
function matches(expected, actual) {
  if (expected === null) return actual === null;
  if (typeof expected === 'number') {
    if (typeof actual === 'number') return actual === expected;
    if (typeof actual === 'bigint') return Number.isInteger(expected) && actual === BigInt(expected);
    if (typeof actual === 'string') return Number.isInteger(expected) && /^-?\d+$/.test(actual) && BigInt(actual) === BigInt(expected);
    return false;
  }
  if (typeof expected === 'string' || typeof expected === 'boolean') return actual === expected;
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((x, i) => matches(x, actual[i]));
  }
  if (typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false;
    const ek = Object.keys(expected).sort();
    const ak = Object.keys(actual).sort();
    return ek.length === ak.length && ek.every((k, i) => k === ak[i] && matches(expected[k], actual[k]));
  }
  return false;
}

// ---- calls ------------------------------------------------------------------------------------

const need = (spec, name) => {
  if (spec[name] === undefined) throw new ScenarioFailure(`"${spec.call}" needs "${name}"`);
  return spec[name];
};

const text = (v) => (Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v));

function casFn(fn) {
  switch (fn && fn.op) {
    case 'append':
      return (cur) => (cur === null ? fn.arg : text(cur) + fn.arg);
    case 'set':
      return () => fn.arg;
    case 'keep':
      return () => undefined;
    case 'delete':
      return () => DELETE;
    case 'incr':
      return (cur) => {
        if (cur === null) return '1';
        const t = text(cur).trim();
        if (!/^-?\d+$/.test(t)) throw new Error(`cas_update incr: the current value ${JSON.stringify(t)} is not a decimal integer`);
        return String(BigInt(t) + 1n);
      };
    default:
      throw new ScenarioFailure(`unknown cas_update fn ${show(fn)}`);
  }
}

function loaderOf(spec, counter) {
  if (spec && spec.fail !== undefined) {
    return () => {
      counter.loads += 1;
      throw new Error(String(spec.fail));
    };
  }
  if (spec && spec.value !== undefined) {
    return async () => {
      counter.loads += 1;
      if (spec.delay_ms) await sleep(spec.delay_ms);
      return spec.value;
    };
  }
  throw new ScenarioFailure(`unknown get_or_set loader ${show(spec)}`);
}

const ttlOpt = (spec) => (spec.ttl === undefined ? {} : { ttl: spec.ttl });

function heldLock(v, spec) {
  if (v === null || typeof v !== 'object' || typeof v.release !== 'function') {
    throw new ScenarioFailure(`"${spec.lock}" is not a lock (${show(v)})`);
  }
  return v;
}

/**
 * Make one call: `{raw}` is what the binding returned, `save` what the step's `save` variable
 * gets. Throws what the binding throws.
 */
async function invoke(c, spec, counter) {
  switch (spec.call) {
    case 'get':
      return { raw: await c.get(need(spec, 'key')) };
    case 'set':
      await c.set(need(spec, 'key'), need(spec, 'value'), ttlOpt(spec));
      return { raw: true };
    case 'add':
    case 'replace':
      return { raw: await c[spec.call](need(spec, 'key'), need(spec, 'value'), ttlOpt(spec)) };
    case 'append':
    case 'prepend':
      return { raw: await c[spec.call](need(spec, 'key'), need(spec, 'value')) };
    case 'delete':
      return { raw: await c.delete(need(spec, 'key')) };
    case 'incr':
    case 'decr':
      return { raw: await c[spec.call](need(spec, 'key'), spec.delta ?? 1, spec.initial, spec.ttl ?? 0) };
    case 'touch':
      return { raw: await c.touch(need(spec, 'key'), need(spec, 'ttl')) };
    case 'gets': {
      const r = await c.gets(need(spec, 'key'));
      return { raw: r === null ? null : r.value, save: r === null ? null : r.cas };
    }
    case 'cas': {
      const token = need(spec, 'cas');
      if (typeof token !== 'bigint' && typeof token !== 'number') throw new ScenarioFailure(`"cas" is not a CAS token (${show(token)})`);
      return { raw: await c.cas(need(spec, 'key'), need(spec, 'value'), token, ttlOpt(spec)) };
    }
    case 'get_multi':
      return { raw: await c.getMulti(need(spec, 'keys')) };
    case 'set_multi':
      await c.setMulti(need(spec, 'items'), ttlOpt(spec));
      return { raw: true };
    case 'delete_multi':
      await c.deleteMulti(need(spec, 'keys'));
      return { raw: true };
    case 'cas_update': {
      const r = await c.casUpdate(need(spec, 'key'), casFn(need(spec, 'fn')), ttlOpt(spec));
      return { raw: r.outcome };
    }
    case 'get_or_set':
      return { raw: await c.getOrSet(need(spec, 'key'), loaderOf(need(spec, 'loader'), counter), ttlOpt(spec)) };
    case 'lock': {
      const opts = { wait: need(spec, 'wait_ms') };
      if (spec.quorum !== undefined) opts.quorum = spec.quorum;
      if (spec.ttl !== undefined) opts.ttl = spec.ttl;
      if (spec.fencing !== undefined) opts.fencing = Boolean(spec.fencing);
      const lock = await c.lock(need(spec, 'name'), opts);
      return { raw: true, save: lock };
    }
    case 'release':
      return { raw: await heldLock(need(spec, 'lock'), spec).release() };
    case 'extend':
      return { raw: await heldLock(need(spec, 'lock'), spec).extend(need(spec, 'ttl')) };
    case 'held':
      return { raw: heldLock(need(spec, 'lock'), spec).held };
    case 'fence':
      return { raw: heldLock(need(spec, 'lock'), spec).fence ?? null };
    default:
      throw new ScenarioFailure(`unknown call ${show(spec.call)}`);
  }
}

/** One call, settled: {ok, value, save} or {ok: false, kind, message}. */
async function perform(ctx, rawSpec, counter) {
  const args = Object.fromEntries(Object.entries(rawSpec).filter(([k]) => !['expect', 'expect_each', 'save', 'loads'].includes(k)));
  const spec = resolve(ctx.vars, args);
  try {
    const r = await invoke(ctx.client, spec, counter);
    return { ok: true, value: normalize(r.raw), save: r.save };
  } catch (e) {
    if (e instanceof ScenarioFailure) throw e;
    const kind = e && typeof e.kind === 'string' ? e.kind : `not a multiput error: ${e && e.name}`;
    return { ok: false, kind, message: e && e.message };
  }
}

function describeOutcome(o) {
  return o.ok ? `result ${show(o.value)}` : `error ${o.kind} (${o.message})`;
}

function describeExpect(vars, expect) {
  if (expect === undefined) return 'no error';
  if ('error' in expect) return `error ${expect.error}`;
  if ('result' in expect) return `result ${show(normalize(resolve(vars, expect.result)))}`;
  if ('ok' in expect) return 'no error';
  return show(expect);
}

/** null if the outcome meets the expectation, else why not. */
function check(vars, expect, o) {
  const mismatch = () => `expected ${describeExpect(vars, expect)}, got ${describeOutcome(o)}`;
  if (expect === undefined || (expect.ok === true && !('result' in expect) && !('error' in expect))) {
    return o.ok ? null : mismatch();
  }
  if ('error' in expect) {
    const want = expect.error;
    if (want !== 'unavailable' && !KINDS.has(want)) throw new ScenarioFailure(`unknown error kind ${show(want)} in expect`);
    if (o.ok) return mismatch();
    const good = want === 'unavailable' ? UNAVAILABLE.has(o.kind) : o.kind === want;
    return good ? null : mismatch();
  }
  if ('result' in expect) {
    if (!o.ok) return mismatch();
    const want = normalize(resolve(vars, expect.result));
    return matches(want, o.value) ? null : mismatch();
  }
  throw new ScenarioFailure(`unknown expect ${show(expect)}`);
}

// ---- steps --------------------------------------------------------------------------------

function clientOptions(o = {}) {
  const known = new Set(['replicas', 'mode', 'read_policy', 'write_policy', 'protocol', 'timeout_ms', 'retry_ms', 'failure_limit']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new ScenarioFailure(`unknown client option "${k}"`);
  // README: replicas defaults to 1 (the Node client's `mode: 'replicated'` alone would mean 2).
  const opts = { replicas: o.replicas ?? 1 };
  if (o.mode !== undefined) opts.mode = o.mode;
  if (o.read_policy !== undefined) opts.readPolicy = o.read_policy;
  if (o.write_policy !== undefined) opts.writePolicy = o.write_policy;
  if (o.protocol !== undefined) opts.protocol = o.protocol;
  opts.timeout = o.timeout_ms ?? 1000;
  opts.retryInterval = o.retry_ms ?? 1000;
  opts.failureLimit = o.failure_limit ?? 1;
  return opts;
}

function describeStep(step) {
  if (step.parallel !== undefined) return `parallel ${step.parallel} x ${describeStep(step.call || {})}`;
  if (step.fault !== undefined) return `fault ${step.fault} on server ${step.server}`;
  if (step.raw !== undefined) return `raw ${step.raw} server ${step.server} key ${show(step.key)}`;
  if (step.sleep_ms !== undefined) return `sleep ${step.sleep_ms} ms`;
  const args = Object.entries(step)
    .filter(([k]) => k !== 'call' && k !== 'expect')
    .map(([k, v]) => `${k}=${show(v)}`)
    .join(' ');
  return `call ${step.call}${args ? ` ${args}` : ''}`;
}

function serverOf(ctx, step) {
  const s = ctx.servers[step.server];
  if (!Number.isInteger(step.server) || s === undefined) throw new ScenarioFailure(`no server ${show(step.server)}`);
  return s;
}

async function runStep(ctx, step) {
  if (step.parallel !== undefined) {
    const n = step.parallel;
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new ScenarioFailure(`bad parallel count ${show(n)}`);
    if (!step.call || typeof step.call !== 'object') throw new ScenarioFailure('parallel without a call object');
    const counter = { loads: 0 };
    const outcomes = await Promise.all(Array.from({ length: n }, () => perform(ctx, step.call, counter)));
    const bad = [];
    outcomes.forEach((o, i) => {
      const why = check(ctx.vars, step.expect_each, o);
      if (why !== null) bad.push(`caller ${i}: ${why}`);
    });
    if (bad.length > 0) throw new ScenarioFailure(`${bad.length} of ${n} callers failed: ${bad.slice(0, 5).join('; ')}${bad.length > 5 ? '; ...' : ''}`);
    if (step.loads !== undefined && counter.loads !== step.loads) {
      throw new ScenarioFailure(`expected ${step.loads} loader invocation(s) in all, got ${counter.loads}`);
    }
    return;
  }
  if (step.fault !== undefined) {
    const s = serverOf(ctx, step);
    switch (step.fault) {
      case 'kill':
        await s.kill();
        // Let the client's sockets see the close (the FIN is already on loopback when the
        // process is gone): whether a call right after a kill reuses a dead socket or
        // reconnects then does not depend on when the event loop got to it.
        await settle();
        return;
      case 'stop':
        await s.stop();
        return;
      case 'cont':
        s.cont();
        return;
      case 'restart':
        await s.restart();
        await settle();
        return;
      default:
        throw new ScenarioFailure(`unknown fault ${show(step.fault)}`);
    }
  }
  if (step.raw !== undefined) {
    const s = serverOf(ctx, step);
    const key = resolve(ctx.vars, step.key);
    if (typeof key !== 'string') throw new ScenarioFailure('raw access needs a "key"');
    switch (step.raw) {
      case 'get': {
        const got = await rawGet(s.port, key);
        if (step.save !== undefined) ctx.vars.set(step.save, got);
        if (step.expect !== undefined) {
          if (!('result' in step.expect)) throw new ScenarioFailure(`raw get takes only a "result" expectation, not ${show(step.expect)}`);
          const want = resolve(ctx.vars, step.expect.result);
          const same =
            want === null
              ? got === null
              : got !== null && Buffer.from(got).equals(typeof want === 'string' ? Buffer.from(want, 'utf8') : Buffer.from(want));
          if (!same) throw new ScenarioFailure(`expected ${want === null ? 'null' : show(Buffer.from(typeof want === 'string' ? Buffer.from(want) : want))}, got ${got === null ? 'null' : show(got)}`);
        }
        return;
      }
      case 'set': {
        const v = resolve(ctx.vars, step.value);
        if (v === null || v === undefined) throw new ScenarioFailure(`raw set of ${show(key)}: no value (${show(step.value)} is null)`);
        const data = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
        await rawSet(s.port, key, data, step.flags ?? 0);
        return;
      }
      case 'delete':
        await rawDelete(s.port, key);
        return;
      default:
        throw new ScenarioFailure(`unknown raw access ${show(step.raw)}`);
    }
  }
  if (step.sleep_ms !== undefined) {
    await sleep(step.sleep_ms);
    return;
  }
  if (step.call !== undefined) {
    const counter = { loads: 0 };
    const o = await perform(ctx, step, counter);
    if (o.ok && step.save !== undefined) ctx.vars.set(step.save, o.save === undefined ? o.value : o.save);
    const why = check(ctx.vars, step.expect, o);
    if (why !== null) throw new ScenarioFailure(why);
    if (step.loads !== undefined && counter.loads !== step.loads) {
      throw new ScenarioFailure(`expected ${step.loads} loader invocation(s), got ${counter.loads}`);
    }
    return;
  }
  throw new ScenarioFailure(`unknown step ${show(step)}`);
}

async function runScenario({ file, scenario: sc }) {
  const n = sc.servers ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > 4) throw new Error(`${file}: "${sc.name}": servers must be 1-4, not ${show(sc.servers)}`);
  const servers = await startServers(n);
  let client = null;
  try {
    client = new Client(
      servers.map((s) => s.address),
      clientOptions(sc.client),
    );
    const ctx = { client, servers, vars: new Map() };
    const steps = sc.steps ?? [];
    // Every step runs (each is bounded); the first failure fails the scenario, later ones are
    // listed after it (they may follow from the first).
    const failed = [];
    for (let i = 0; i < steps.length; i++) {
      try {
        await runStep(ctx, steps[i]);
      } catch (e) {
        failed.push(`step ${i} (${describeStep(steps[i])}): ${e.message}`);
      }
    }
    if (failed.length > 0) {
      const later = failed.length > 1 ? `\n  later failures (may follow from the first):\n    ${failed.slice(1).join('\n    ')}` : '';
      throw new Error(`${file}: "${sc.name}", ${failed[0]}${later}`);
    }
  } finally {
    if (client !== null) client.close();
    for (const s of servers) await s.kill();
  }
}

// ---- the tests ------------------------------------------------------------------------------

const { files, scenarios, problems } = loadScenarios();
const gaps = loadGaps();
const gapSet = new Set(gaps);

test('conformance: the scenario files load, names are unique, known gaps name real scenarios', () => {
  assert.ok(files.length > 0, `no scenario files in ${DIR}`);
  assert.deepEqual(problems, []);
  const names = new Set(scenarios.map((s) => s.scenario.name));
  const stale = gaps.filter((g) => !names.has(g));
  assert.deepEqual(stale, [], `${GAPS_FILE} "${LANG}" lists scenarios that do not exist`);
  assert.equal(gapSet.size, gaps.length, `${GAPS_FILE} "${LANG}" lists a scenario twice`);
});

for (const entry of scenarios) {
  const name = entry.scenario.name;
  test(`conformance: ${name}`, async (t) => {
    let failure = null;
    try {
      await runScenario(entry);
    } catch (e) {
      failure = e;
    }
    if (gapSet.has(name)) {
      if (failure === null) {
        assert.fail(`"${name}" is listed under "${LANG}" in tests/conformance/${GAPS_FILE} but passes: remove it from known-gaps.json`);
      }
      for (const line of `known gap (expected to fail): ${failure.message}`.split('\n')) t.diagnostic(line);
      return;
    }
    if (failure !== null) throw failure;
  });
}
