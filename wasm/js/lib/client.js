'use strict';
// The Node client. It does the I/O (one pipelined socket per server, timeouts, reconnects)
// and asks the WASM core for every decision: key rules, placement, health, what a reply
// means, which replica wins, what to repair, when a replicated write succeeded, how long to
// back off, what a lock token is.

const fs = require('node:fs');
const { performance } = require('node:perf_hooks');
const wasm = require('./wasm');
const { Connection } = require('./connection');
const errors = require('./errors');
const { Lock } = require('./lock');
const { run, seed } = require('./run');
const {
  DELETE, randomU64, toKey, keyName, out, ttlOf, mapErrors, settle, pack, report, entriesOf,
  multiError, settleMulti,
} = require('./util');

const { toError } = errors;

/** A call that failed before it was sent: rejected, or handed to `fail` (on a later tick). */
function failed(e, fail) {
  const p = Promise.reject(e);
  return fail === null ? p : p.catch(fail);
}

/** `node:tls` options from the core's TLS settings (files read once, here), or null. */
function tlsOptions(t) {
  if (t === null) return null;
  const read = (option, file) => {
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new errors.ConfigError(`${option}: cannot read ${JSON.stringify(file)}: ${e.message}`, { kind: 'Config' });
    }
  };
  return {
    ca: read('tlsCa', t.ca),
    cert: read('tlsCert', t.cert),
    key: read('tlsKey', t.key),
    serverName: t.serverName,
  };
}

class Client {
  constructor(servers, options) {
    if (!Array.isArray(servers) && typeof servers !== 'string') {
      options = servers || {};
      servers = options.servers;
    }
    options = options || {};
    const core = new wasm.Core({
      ...options,
      servers,
      writerId: randomU64(),
      tokenSeed: randomU64(),
    });
    this._core = core;
    this._tls = tlsOptions(core.tls);
    const n = core.length;
    this._conns = new Array(n).fill(null);
    this._troubled = new Uint8Array(n);
    this._flights = new Map();
    this._closed = false;
    this._addresses = Array.from({ length: n }, (_, i) => core.address(i));
  }

  /** `plain` or `replicated`. */
  get mode() {
    return this._core.mode;
  }

  /** Server addresses (`host:port`), in configuration order. */
  get servers() {
    return Array.from({ length: this._core.length }, (_, i) => this._core.address(i));
  }

  /** This client's writer id (BigInt), written into every envelope. */
  get writerId() {
    return this._core.writerId;
  }

  /** The replication policies in force: `{ readPolicy, writePolicy }` (replicated clients). */
  get policy() {
    return this._core.policy;
  }

  /**
   * This client with other read and/or write policies, for the calls that need them:
   * `c.withPolicy({ readPolicy: 'first' }).get(k)`. The view shares the connections, server
   * health, clock and writer id; the replica count and placement do not change. Make one view
   * per policy and keep it (its WASM state lives as long as the client); close the client,
   * not the view.
   */
  withPolicy({ readPolicy, writePolicy } = {}) {
    let core;
    try {
      core = this._core.withPolicies(readPolicy, writePolicy);
    } catch (e) {
      throw toError(e);
    }
    const view = Object.create(this);
    view._core = core;
    view.close = () => {
      throw new Error('close the client, not a withPolicy() view of it');
    };
    return view;
  }

  _conn(s) {
    let c = this._conns[s];
    if (c === null) {
      const tls = this._core.usesTls(s) ? this._tls : null;
      c = new Connection(this._core, s, tls, (e) => this._failed(s, e));
      this._conns[s] = c;
    }
    return c;
  }

  /**
   * One request to server `s`: fails fast while the server is marked down; the outcome is
   * recorded for its health (failures by the connection, through `_failed`). Resolves with the
   * codec's result passed through `conv` (without `conv` the result may be an Error the
   * server answered with); rejects on I/O failure, or with `fail`, settles with what
   * `fail(error)` returns or throws.
   */
  _call(s, encode, conv = null, fail = null) {
    const core = this._core;
    if (this._closed) {
      return failed(toError(wasm.ioError('closed', this._addresses[s], 'the client was closed', 0, '')), fail);
    }
    if (this._troubled[s] === 0) return this._conn(s).request(encode, conv, fail);
    const down = core.admit(s, performance.now());
    if (down !== null) return failed(toError(down), fail);
    // Troubled server: record its answers too (its failures are recorded by the connection).
    return this._conn(s)
      .request(encode, null)
      .then((r) => {
        core.record(s, performance.now(), null);
        this._troubled[s] = core.failures(s) > 0 ? 1 : 0;
        return conv === null ? r : conv(r);
      }, fail ?? undefined);
  }

  _failed(s, e) {
    if (this._closed) return; // our own close() is not the server's failure
    const core = this._core;
    core.record(s, performance.now(), e);
    this._troubled[s] = core.failures(s) > 0 ? 1 : 0;
  }

  // ---- reads and writes: the core picks each call's machine, plain or replicated --------------

  /** The value of `key`, or `null` on a miss. */
  get(key) {
    return this._run((j) => this._core.get(j, toKey(key), false), out);
  }

  /** `{value, cas}` or `null`: the CAS unique (replicated: the value's version token) for `cas()`. */
  async gets(key) {
    const r = await this._run((j) => this._core.get(j, toKey(key), true));
    return r === null ? null : { value: out(r.value), cas: r.cas };
  }

  /** Store `value`. Resolves with a WriteReport `{stored, failed}`; rejects when it was not stored. */
  set(key, value, opts) {
    const core = this._core;
    // Bytes go in as bytes (no asking JavaScript what type the value is from WebAssembly).
    const install =
      value instanceof Uint8Array
        ? (j) => core.setBytes(j, toKey(key), value, ttlOf(opts))
        : (j) => core.set(j, toKey(key), value, ttlOf(opts));
    return this._run(install, report);
  }

  /** add/replace/append/prepend/cas: resolves true, or rejects with the condition that failed. */
  _store(mode, key, value, opts, cas) {
    return this._run((j) => this._core.store(j, mode, toKey(key), value, ttlOf(opts), cas, seed()));
  }

  /** Store only if missing; rejects with NotStoredError if it exists. */
  add(key, value, opts) {
    return this._store('add', key, value, opts);
  }

  /** Store only if present; rejects with NotStoredError if missing. */
  replace(key, value, opts) {
    return this._store('replace', key, value, opts);
  }

  /** Append bytes to a plain value. */
  append(key, value) {
    return this._store('append', key, value, 0);
  }

  /** Prepend bytes to a plain value. */
  prepend(key, value) {
    return this._store('prepend', key, value, 0);
  }

  /** Store only if the key still has unique `cas` (from `gets`); ExistsError / NotFoundError. */
  cas(key, value, cas, opts) {
    return this._store('cas', key, value, opts, BigInt(cas));
  }

  /** Delete: plain mode resolves true when the key existed; replicated mode writes a tombstone
   *  to every replica and resolves true when the write policy was met. */
  delete(key) {
    return this._run((j) => this._core.delete(j, toKey(key)));
  }

  /** Increment a counter: the new value (number, or BigInt past 2^53), or null if missing.
   *  With `initial`, a missing counter is created at `initial` (stored with `ttl`) and that is
   *  returned. */
  incr(key, delta = 1, initial, ttl = 0) {
    return this._run((j) => this._core.arith(j, toKey(key), true, delta, initial, ttl, seed()));
  }

  /** Decrement a counter (stops at 0); `initial` as for incr. */
  decr(key, delta = 1, initial, ttl = 0) {
    return this._run((j) => this._core.arith(j, toKey(key), false, delta, initial, ttl, seed()));
  }

  /** Set a new TTL: true when the key existed. */
  touch(key, ttl) {
    return this._run((j) => this._core.touch(j, toKey(key), ttl, seed()));
  }

  // ---- multi-key calls ----------------------------------------------------------------------

  /** A Map of every key that hit to its value. Each server gets one request, all at once.
   *  Rejects if some keys failed (`error.failures`: Map key → Error; `error.partial`: the hits). */
  async getMulti(keys) {
    const list = Array.from(keys);
    // Keys go into WebAssembly packed in one buffer, values come out packed in one buffer.
    const [packed, ends] = pack(list);
    const [codes, blob, ranges, values] = await this._run((j) => this._core.getMulti(j, packed, ends));
    const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    const found = new Array(list.length);
    const failures = new Map();
    for (let i = 0; i < list.length; i++) {
      switch (codes[i]) {
        case 1:
          found[i] = buf.subarray(ranges[2 * i], ranges[2 * i + 1]);
          break;
        case 2:
          found[i] = buf.toString('utf8', ranges[2 * i], ranges[2 * i + 1]);
          break;
        case 3: {
          const v = values[i];
          if (v instanceof Error) failures.set(list[i], toError(v));
          else found[i] = out(v);
          break;
        }
        default:
      }
    }
    return settleMulti(list, found, failures);
  }

  /** Store many `[key, value]` (a Map, an object or an array of pairs); one pipelined request
   *  per server. Rejects if any failed (`error.failures`: Map key → Error). */
  async setMulti(items, opts) {
    const entries = entriesOf(items);
    const keys = entries.map(([k]) => k);
    const rs = await this._run((j) => this._core.setMulti(j, keys.map(toKey), entries.map(([, v]) => v), ttlOf(opts)));
    const failures = new Map();
    rs.forEach((r, i) => r instanceof Error && failures.set(keys[i], toError(r)));
    if (failures.size > 0) throw multiError(failures);
  }

  /** Delete many keys: a Map key → existed (replicated: true once its tombstones met the policy). */
  async deleteMulti(keys) {
    const list = Array.from(keys);
    const rs = await this._run((j) => this._core.deleteMulti(j, list.map(toKey)));
    const failures = new Map();
    rs.forEach((r, i) => r instanceof Error && failures.set(list[i], toError(r)));
    return settleMulti(list, rs.map((r) => (r instanceof Error ? undefined : r)), failures);
  }

  // ---- replication ---------------------------------------------------------------------------

  /** The servers holding `key`'s copies, primary first (plain mode: its one server). */
  replicasOf(key) {
    try {
      return Array.from(this._core.replicasOf(toKey(key), performance.now()), (s) => this._addresses[s]);
    } catch (e) {
      throw toError(e);
    }
  }

  /** Run the call `install(job)` puts in a job (one of the core's machines) to its end
   *  (lib/run.js); resolves with its result passed through `shape` when given. */
  _run(install, shape, decide, load) {
    return run(this, install, shape, decide, load);
  }

  // ---- recipes: CAS updates, locks, miss-storm protection --------------------------------

  /**
   * Read-modify-write without losing concurrent updates. `fn(current)` gets the current value
   * (`null` if missing) and returns the new value, `undefined` to leave it, or `DELETE`. A
   * missing key is created with `add`; conflicts retry with jittered backoff. Resolves
   * `{outcome: 'stored'|'unchanged'|'deleted', attempts, report?}`.
   */
  async casUpdate(key, fn, opts = {}) {
    const k = toKey(key);
    const r = await this._run((j) => this._core.casUpdate(j, k, opts, seed()), undefined, fn);
    if (r.report) r.report = report(r.report);
    return r;
  }

  /**
   * Take the lock `name`: an `add` of a unique owner token on the name's ring owner only
   * (with `quorum: N`, on a majority of its first N replicas), retried with jittered backoff
   * for up to `wait` ms. Rejects with LockNotAcquiredError when someone held it the whole
   * time, or with the server's error (never another server).
   */
  async lock(name, opts = {}) {
    const k = toKey(name);
    const got = await this._run((j) => this._core.lock(j, k, opts, seed()));
    return new Lock(this, k, name, got);
  }

  /**
   * The value of `key`, loading and storing it on a miss with protection against miss
   * storms: concurrent callers in this process share one load; across processes, one takes a
   * fill lock and loads while the others wait for its value (up to `wait` ms) before loading
   * themselves. The stored TTL gets ±`ttlJitter` jitter. Plain and replicated alike.
   */
  async getOrSet(key, loader, opts = {}) {
    const hit = await this.get(key);
    if (hit !== null) return hit;
    const k = toKey(key);
    const name = keyName(k);
    const inflight = this._flights.get(name);
    if (inflight) return inflight;
    const p = this._run((j) => this._core.fill(j, k, ttlOf(opts), typeof opts === 'object' ? opts : {}, seed()), out, undefined, loader)
      .finally(() => this._flights.delete(name));
    this._flights.set(name, p);
    return p;
  }

  // ---- servers --------------------------------------------------------------------------------

  async _everyServer(encode) {
    const n = this._core.length;
    const rs = await Promise.all(Array.from({ length: n }, (_, s) => settle(this._call(s, encode))));
    const m = new Map();
    rs.forEach((r, s) => m.set(this._core.address(s), r instanceof Error ? toError(r) : r));
    return m;
  }

  /** `stats [group]` of every server: Map address → object (or the server's Error). */
  stats(group) {
    return this._everyServer((c, w, now) => c.stats(group, w, now));
  }

  /** `version` of every server: Map address → string (or Error). */
  version() {
    return this._everyServer((c, w, now) => c.version(w, now));
  }

  /** `flush_all` on every server; rejects if any failed. */
  async flushAll(delay) {
    const m = await this._everyServer((c, w, now) => c.flushAll(delay, w, now));
    for (const r of m.values()) if (r instanceof Error) throw r;
  }

  /** Close every connection; pending calls fail with ConnectionClosedError. */
  close() {
    this._closed = true;
    for (const c of this._conns) if (c !== null) c.close();
  }
}

mapErrors(Client.prototype, [
  'gets', 'add', 'replace', 'append', 'prepend', 'cas', 'delete', 'incr', 'decr', 'touch',
  'getMulti', 'setMulti', 'deleteMulti', 'casUpdate', 'lock', 'getOrSet', 'stats', 'version',
  'flushAll',
]);
mapErrors(Lock.prototype, ['release', 'extend']);

if (typeof Symbol.asyncDispose === 'symbol') {
  Lock.prototype[Symbol.asyncDispose] = function dispose() {
    return this.release();
  };
}

module.exports = { Client, Lock, DELETE };
