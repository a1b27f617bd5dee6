'use strict';
// The Node client. It does the I/O (one pipelined socket per server, timeouts, reconnects)
// and asks the WASM core for every decision: key rules, placement, health, what a reply
// means, which replica wins, what to repair, when a replicated write succeeded, how long to
// back off, what a lock token is.

const { webcrypto } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const wasm = require('./wasm');
const { Connection } = require('./connection');
const errors = require('./errors');

const { toError } = errors;
const DEFAULTS = wasm.defaults();

/** Return it from a `casUpdate` function to delete the key (if it still holds what was read). */
const DELETE = Symbol('multiput.DELETE');

function randomU64() {
  const a = new BigUint64Array(1);
  do webcrypto.getRandomValues(a);
  while (a[0] === 0n);
  return a[0];
}

function toKey(key) {
  if (typeof key === 'string') return Buffer.from(key, 'utf8');
  if (key instanceof Uint8Array) return key;
  throw toError(wasm.recipeError('Config', '', 0, 0, 'a key must be a string or a Buffer/Uint8Array'));
}

function keyName(key) {
  return typeof key === 'string' ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('utf8');
}

/** Values come out of WASM as plain Uint8Arrays; hand out Buffers (a view, no copy). */
function out(v) {
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}

function ttlOf(opts) {
  if (opts === undefined || opts === null) return 0;
  if (typeof opts === 'number') return opts;
  return opts.ttl ?? 0;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function rethrow(r) {
  if (r instanceof Error) throw toError(r);
  return r;
}

function asValue(r) {
  if (r instanceof Error) throw toError(r);
  return out(r);
}

function mapError(e) {
  throw toError(e);
}

/** Public calls reject with MultiputError subclasses, whatever layer the error came from. */
function mapErrors(proto, names) {
  for (const name of names) {
    const f = proto[name];
    proto[name] = function mapped(...args) {
      try {
        return f.apply(this, args).catch(mapError);
      } catch (e) {
        return Promise.reject(toError(e));
      }
    };
    Object.defineProperty(proto[name], 'name', { value: name });
  }
}

function settle(p) {
  return p.then(
    (r) => r,
    (e) => e,
  );
}

function sameBytes(a, b) {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** Keys (strings or bytes) packed back to back as UTF-8, and where each ends: one copy into
 *  WebAssembly for all of them. */
function pack(keys) {
  let total = 0;
  for (const k of keys) {
    if (typeof k === 'string') total += Buffer.byteLength(k, 'utf8');
    else if (k instanceof Uint8Array) total += k.length;
    else toKey(k); // throws the Config error
  }
  const packed = Buffer.allocUnsafe(total);
  const ends = new Uint32Array(keys.length);
  let at = 0;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (typeof k === 'string') at += packed.write(k, at, 'utf8');
    else {
      packed.set(k, at);
      at += k.length;
    }
    ends[i] = at;
  }
  return [packed, ends];
}

function entriesOf(items) {
  if (items instanceof Map) return [...items.entries()];
  if (Array.isArray(items)) return items;
  return Object.entries(items);
}

function multiError(failures) {
  const [key, first] = failures.entries().next().value;
  const err = toError(first);
  const name = typeof key === 'string' ? key : keyName(key);
  const e = new err.constructor(`${failures.size} key(s) failed; first, ${JSON.stringify(name)}: ${err.message}`, err);
  e.failures = failures;
  return e;
}

/**
 * The Map of a multi-key call (`list[i]` -> `values[i]`, undefined entries left out), or, when
 * some keys failed, the multiError carrying that Map as `partial`.
 */
function settleMulti(list, values, failures) {
  const result = new Map();
  list.forEach((k, i) => values[i] !== undefined && result.set(k, values[i]));
  if (failures.size > 0) {
    const e = multiError(failures);
    e.partial = result;
    throw e;
  }
  return result;
}

/**
 * A memcached client over a fleet of servers. See index.d.ts for the options and calls.
 */
class Client {
  constructor(servers, options) {
    if (!Array.isArray(servers) && typeof servers !== 'string') {
      options = servers || {};
      servers = options.servers;
    }
    // "host:port,host:port" (`;` also separates), as the CLI and the Python binding take it.
    if (typeof servers === 'string') servers = servers.split(/[,;]/).map((x) => x.trim()).filter(Boolean);
    options = options || {};
    // As the Python binding: more than one replica means the envelope; `mode: 'replicated'`
    // forces it with one replica (a fleet migrating to replication).
    const mode = options.mode ?? ((options.replicas ?? 1) > 1 ? 'replicated' : 'plain');
    const core = new wasm.Core({
      ...options,
      servers,
      mode,
      writerId: randomU64(),
      tokenSeed: randomU64(),
    });
    this._core = core;
    this._replicated = core.replicated;
    this._timeout = options.timeout ?? DEFAULTS.timeout;
    this._connectTimeout = options.connectTimeout ?? DEFAULTS.connectTimeout;
    this._protocol = options.protocol ?? 'auto';
    this._convention = options.convention ?? 'python';
    const n = core.length;
    this._conns = new Array(n).fill(null);
    this._troubled = new Uint8Array(n);
    this._flights = new Map();
    this._prefix = core.keyPrefix;
    this._closed = false;
    this._addresses = Array.from({ length: n }, (_, i) => core.address(i));
  }

  /** `plain` or `replicated`. */
  get mode() {
    return this._replicated ? 'replicated' : 'plain';
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
    if (!this._replicated) return null;
    return { readPolicy: this._core.readPolicy, writePolicy: this._core.writePolicy };
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
      const core = this._core;
      c = new Connection({
        address: core.address(s),
        host: core.host(s),
        port: core.port(s),
        timeout: this._timeout,
        connectTimeout: this._connectTimeout,
        keyPrefix: this._prefix,
        binaryKeys: core.binaryKeys,
        maxValueSize: core.maxValueSize,
        protocol: this._protocol,
        convention: this._convention,
        onFailure: (e) => this._failed(s, e),
      });
      this._conns[s] = c;
    }
    return c;
  }

  /**
   * One request to server `s`: fails fast while the server is marked down; the outcome is
   * recorded for its health (failures by the connection, through `_failed`). Resolves with the
   * codec's result passed through `conv` (without `conv` the result may be an Error the
   * server answered with); rejects on I/O failure.
   */
  _call(s, encode, conv = null) {
    const core = this._core;
    if (this._closed) {
      return Promise.reject(toError(wasm.ioError('closed', this._addresses[s], 'the client was closed', 0, '')));
    }
    if (this._troubled[s] === 0) return this._conn(s).request(encode, conv);
    const down = core.admit(s, performance.now());
    if (down !== null) return Promise.reject(toError(down));
    // Troubled server: record its answers too (its failures are recorded by the connection).
    return this._conn(s)
      .request(encode, null)
      .then((r) => {
        core.record(s, performance.now(), null);
        this._troubled[s] = core.failures(s) > 0 ? 1 : 0;
        return conv === null ? r : conv(r);
      });
  }

  _failed(s, e) {
    if (this._closed) return; // our own close() is not the server's failure
    const core = this._core;
    core.record(s, performance.now(), e);
    this._troubled[s] = core.failures(s) > 0 ? 1 : 0;
  }

  _route(k) {
    return this._core.route(k);
  }

  // ---- plain reads and writes --------------------------------------------------------------

  /** The value of `key`, or `null` on a miss. */
  get(key) {
    try {
      const k = toKey(key);
      if (this._replicated) return this._rget(k).catch(mapError);
      const s = this._core.route(k);
      return this._call(s, (c) => c.get(k, false, undefined, true), asValue);
    } catch (e) {
      return Promise.reject(toError(e));
    }
  }

  /** `{value, cas}` or `null` (plain mode: the CAS unique for `cas()`). */
  async gets(key) {
    this._plainOnly('gets');
    const k = toKey(key);
    const r = rethrow(await this._call(this._route(k), (c) => c.get(k, true, undefined, true)));
    return r === null ? null : { value: out(r.value), cas: r.cas };
  }

  /** Store `value`. Resolves with a WriteReport `{stored, failed}`; rejects when it was not stored. */
  set(key, value, opts) {
    try {
      const k = toKey(key);
      const ttl = ttlOf(opts);
      if (this._replicated) return this._rwrite(k, this._core.envelope(value, Date.now()), ttl, 'write').catch(mapError);
      const s = this._core.route(k);
      const report = (r) => {
        rethrow(r);
        return { stored: [this._addresses[s]], failed: [] };
      };
      // Bytes and strings are stored as they are with flags 0 under both conventions
      // (values.rs in wasm/src); other types are typed by the core.
      if (value instanceof Uint8Array) return this._call(s, (c) => c.store('set', k, value, 0, ttl, undefined), report);
      if (typeof value === 'string') {
        const data = Buffer.from(value, 'utf8');
        return this._call(s, (c) => c.store('set', k, data, 0, ttl, undefined), report);
      }
      return this._call(s, (c) => c.storeValue('set', k, value, ttl, undefined), report);
    } catch (e) {
      return Promise.reject(toError(e));
    }
  }

  _plainOnly(what) {
    if (this._replicated) {
      throw toError(
        wasm.recipeError('Unsupported', '', 0, 0, `${what} is not supported on replicated keys; use casUpdate (or a plain client for plain keys)`),
      );
    }
  }

  async _store(mode, key, value, opts, cas) {
    this._plainOnly(mode);
    const k = toKey(key);
    const ttl = ttlOf(opts);
    rethrow(await this._call(this._route(k), (c) => c.storeValue(mode, k, value, ttl, cas)));
    return true;
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
  async delete(key) {
    const k = toKey(key);
    if (this._replicated) {
      await this._rwrite(k, this._core.tombstone(Date.now()), this._core.tombstoneTtl, 'delete');
      return true;
    }
    return rethrow(await this._call(this._route(k), (c) => c.delete(k)));
  }

  /** Increment a counter: the new value (number, or BigInt past 2^53), or null if missing. */
  incr(key, delta = 1) {
    return this._arith(key, true, delta);
  }

  /** Decrement a counter (stops at 0). */
  decr(key, delta = 1) {
    return this._arith(key, false, delta);
  }

  async _arith(key, incr, delta) {
    const k = toKey(key);
    if (!this._replicated) return rethrow(await this._call(this._route(k), (c) => c.arith(k, incr, delta)));
    // Replicated: an exact read-modify-write serialized by CAS on the primary (the core's
    // incr_exact), never memcached's incr on each replica (replicas would drift).
    const d = BigInt(delta);
    let result = null;
    await this.casUpdate(k, (cur) => {
      if (cur === null) {
        result = null;
        return undefined;
      }
      // As the core's incr_exact: an unsigned decimal (enveloped int, or plain digits).
      let text;
      if (typeof cur === 'number' || typeof cur === 'bigint') text = String(cur);
      else if (Buffer.isBuffer(cur) || typeof cur === 'string') text = cur.toString();
      else text = '';
      if (!/^\s*\d+\s*$/.test(text)) {
        throw toError(wasm.recipeError('Client', '', 0, 0, 'cannot increment or decrement a non-numeric value'));
      }
      const n = BigInt(text.trim());
      let next = incr ? n + d : n - d;
      if (next < 0n) next = 0n;
      result = next <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(next) : next;
      return result;
    });
    return result;
  }

  /** Set a new TTL: true when the key existed (plain mode only, as in the Python binding). */
  async touch(key, ttl) {
    this._plainOnly('touch');
    const k = toKey(key);
    return rethrow(await this._call(this._route(k), (c) => c.touch(k, ttl)));
  }

  // ---- multi-key calls ----------------------------------------------------------------------

  /** A Map of every key that hit to its value. Each server gets one request, all at once.
   *  Rejects if some keys failed (`error.failures`: Map key → Error; `error.partial`: the hits). */
  async getMulti(keys) {
    const list = Array.from(keys);
    const found = new Array(list.length);
    const failures = new Map();
    if (this._replicated) {
      await this._rgetMulti(list, list.map(toKey), found, failures);
    } else {
      // Keys go into WebAssembly packed in one buffer, values come out packed in one buffer.
      const [packed, ends] = pack(list);
      const plan = this._core.planPacked(packed, ends, false, 0);
      plan.errors.forEach((e, i) => e && failures.set(list[i], toError(e)));
      const whole = plan.groups.length === 1 && failures.size === 0;
      await Promise.all(
        plan.groups.map(([s, pos]) =>
          settle(this._call(s, (c) => c.getMultiPacked(packed, ends, whole ? undefined : pos))).then((r) => {
            if (r instanceof Error) {
              pos.forEach((i) => failures.set(list[i], toError(r)));
              return;
            }
            const { codes, blob, ranges, values } = r;
            const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
            pos.forEach((i, j) => {
              switch (codes[j]) {
                case 1:
                  found[i] = buf.subarray(ranges[2 * j], ranges[2 * j + 1]);
                  break;
                case 2:
                  found[i] = buf.toString('utf8', ranges[2 * j], ranges[2 * j + 1]);
                  break;
                case 3: {
                  const v = values[j];
                  if (v instanceof Error) failures.set(list[i], toError(v));
                  else found[i] = out(v);
                  break;
                }
                default:
              }
            });
          }),
        ),
      );
    }
    return settleMulti(list, found, failures);
  }

  /** Store many `[key, value]` (a Map, an object or an array of pairs); one pipelined request
   *  per server. Rejects if any failed (`error.failures`: Map key → Error). */
  async setMulti(items, opts) {
    const entries = entriesOf(items);
    const ttl = ttlOf(opts);
    const failures = new Map();
    const keys = entries.map(([k]) => k);
    const ks = keys.map(toKey);
    if (this._replicated) {
      const now = Date.now();
      const envs = entries.map(([, v], i) => {
        try {
          return this._core.envelope(v, now);
        } catch (e) {
          failures.set(keys[i], toError(e));
          return null;
        }
      });
      await this._rwriteMulti(keys, ks, envs, ttl, 'write', failures);
    } else {
      const plan = this._core.plan(ks, false, 0);
      plan.errors.forEach((e, i) => e && failures.set(keys[i], toError(e)));
      await Promise.all(
        plan.groups.map(([s, pos]) => {
          const pairs = Array.from(pos, (i) => [ks[i], entries[i][1]]);
          return settle(this._call(s, (c) => c.storeValues(pairs, 'set', ttl))).then((r) => {
            pos.forEach((i, j) => {
              const v = r instanceof Error ? r : r[j];
              if (v instanceof Error) failures.set(keys[i], toError(v));
            });
          });
        }),
      );
    }
    if (failures.size > 0) throw multiError(failures);
  }

  /** Delete many keys: a Map key → existed (replicated: true once its tombstones met the policy). */
  async deleteMulti(keys) {
    const list = Array.from(keys);
    const ks = list.map(toKey);
    const failures = new Map();
    const existed = new Array(list.length);
    if (this._replicated) {
      const now = Date.now();
      const envs = list.map(() => this._core.tombstone(now));
      await this._rwriteMulti(list, ks, envs, this._core.tombstoneTtl, 'delete', failures);
      list.forEach((k, i) => failures.has(k) || (existed[i] = true));
    } else {
      const plan = this._core.plan(ks, false, 0);
      plan.errors.forEach((e, i) => e && failures.set(list[i], toError(e)));
      await Promise.all(
        plan.groups.map(([s, pos]) => {
          const gk = Array.from(pos, (i) => ks[i]);
          return settle(this._call(s, (c) => c.deleteMulti(gk))).then((r) => {
            pos.forEach((i, j) => {
              const v = r instanceof Error ? r : r[j];
              if (v instanceof Error) failures.set(list[i], toError(v));
              else existed[i] = v;
            });
          });
        }),
      );
    }
    return settleMulti(list, existed, failures);
  }

  // ---- replication ---------------------------------------------------------------------------

  /** The servers holding `key`'s copies, primary first (plain mode: its one server). */
  replicasOf(key) {
    try {
      const k = toKey(key);
      if (!this._replicated) return [this._addresses[this._core.route(k)]];
      return Array.from(this._core.replicasOf(k, performance.now()), (s) => this._addresses[s]);
    } catch (e) {
      throw toError(e);
    }
  }

  /** Raw copies of one key from each of `servers` (an Error where a replica did not answer). */
  _fetchCopies(k, servers) {
    return Promise.all(
      Array.from(servers, (s) =>
        settle(this._call(s, (c) => c.getMulti([k], true, true, false))).then((r) => (r instanceof Error ? r : r[0])),
      ),
    );
  }

  async _rget(k) {
    const core = this._core;
    const servers = core.replicasOf(k, performance.now());
    if (core.readPolicy === 'first') {
      const errs = [];
      for (const s of servers) {
        const r = await settle(this._call(s, (c) => c.get(k, false, undefined, false)));
        if (r instanceof Error) {
          errs.push(r);
          continue;
        }
        if (r !== null) {
          const v = core.decodeStored(r.data, r.flags);
          if (v !== null) core.observe(wasm.envelopeDecode(r.data)?.ts ?? 0n, Date.now());
          return out(v);
        }
      }
      if (errs.length === servers.length) {
        try {
          core.resolve(errs, Date.now()); // throws the Replication error naming every replica
        } catch (e) {
          throw toError(e);
        }
      }
      return null;
    }
    const copies = await this._fetchCopies(k, servers);
    let res;
    try {
      res = core.resolve(copies, Date.now());
    } catch (e) {
      throw toError(e);
    }
    if (res.repairs.length > 0) {
      const win = copies[res.winner];
      await this._repair(
        res.repairs.map((rep) => [servers[rep.replica], [k, win.data, win.flags, rep.ttl, rep.mode, rep.cas]]),
      );
    }
    if (res.error) throw toError(res.error);
    return res.found ? out(res.value) : null;
  }

  /** Write winners back, one pipelined request per server; failures do not fail the read. */
  async _repair(pairs) {
    const byServer = new Map();
    for (const [s, item] of pairs) {
      if (!byServer.has(s)) byServer.set(s, []);
      byServer.get(s).push(item);
    }
    await Promise.all([...byServer].map(([s, items]) => settle(this._call(s, (c) => c.storeItems(items)))));
  }

  async _rgetMulti(list, ks, found, failures) {
    const core = this._core;
    if (core.readPolicy === 'first') {
      await Promise.all(
        list.map((key, i) =>
          this._rget(ks[i]).then(
            (v) => {
              if (v !== null) found[i] = v;
            },
            (e) => failures.set(key, toError(e)),
          ),
        ),
      );
      return;
    }
    const plan = core.plan(ks, true, performance.now());
    plan.errors.forEach((e, i) => e && failures.set(list[i], toError(e)));
    const copies = list.map((_, i) => (plan.placement[i] ? new Array(plan.placement[i].length).fill(null) : null));
    await Promise.all(
      plan.groups.map(([s, pos]) => {
        const gk = Array.from(pos, (i) => ks[i]);
        return settle(this._call(s, (c) => c.getMulti(gk, true, true, false))).then((r) => {
          pos.forEach((i, j) => {
            copies[i][plan.placement[i].indexOf(s)] = r instanceof Error ? r : r[j];
          });
        });
      }),
    );
    const repairs = [];
    const unreadable = [];
    const now = Date.now();
    list.forEach((key, i) => {
      if (copies[i] === null) return;
      let res;
      try {
        res = core.resolve(copies[i], now);
      } catch (e) {
        failures.set(key, toError(e));
        return;
      }
      if (res.repairs.length > 0) {
        const win = copies[i][res.winner];
        for (const rep of res.repairs) {
          repairs.push([plan.placement[i][rep.replica], [ks[i], win.data, win.flags, rep.ttl, rep.mode, rep.cas]]);
        }
      }
      if (res.error) unreadable.push([key, res.error]);
      else if (res.found) found[i] = out(res.value);
    });
    if (repairs.length > 0) await this._repair(repairs);
    for (const [key, e] of unreadable) failures.set(key, toError(e));
  }

  /** A replicated write of `data` (an envelope) to every replica of `k`; the core decides. */
  async _rwrite(k, data, ttl, op) {
    const servers = this._core.replicasOf(k, performance.now());
    const results = await Promise.all(
      Array.from(servers, (s) => settle(this._call(s, (c) => c.store('set', k, data, 0, ttl, undefined)))),
    );
    try {
      return this._core.writeOutcome(op, servers, results);
    } catch (e) {
      throw toError(e);
    }
  }

  async _rwriteMulti(keys, ks, envs, ttl, op, failures) {
    const core = this._core;
    const valid = ks.map((k, i) => (envs[i] === null ? null : k));
    const plan = core.plan(
      valid.map((k) => k ?? ''),
      true,
      performance.now(),
    );
    const results = keys.map(() => null);
    keys.forEach((key, i) => {
      if (envs[i] === null) return;
      if (plan.errors[i]) failures.set(key, toError(plan.errors[i]));
      else results[i] = new Array(plan.placement[i].length).fill(true);
    });
    await Promise.all(
      plan.groups.map(([s, pos]) => {
        const live = Array.from(pos).filter((i) => envs[i] !== null);
        if (live.length === 0) return undefined;
        const items = live.map((i) => [ks[i], envs[i], 0, ttl, 'set']);
        return settle(this._call(s, (c) => c.storeItems(items))).then((r) => {
          live.forEach((i, j) => {
            results[i][plan.placement[i].indexOf(s)] = r instanceof Error ? r : r[j];
          });
        });
      }),
    );
    keys.forEach((key, i) => {
      if (results[i] === null) return;
      try {
        core.writeOutcome(op, plan.placement[i], results[i]);
      } catch (e) {
        failures.set(key, toError(e));
      }
    });
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
    const o = {
      maxAttempts: opts.maxAttempts ?? DEFAULTS.casMaxAttempts,
      deadline: opts.deadline ?? DEFAULTS.casDeadline,
      baseBackoff: opts.baseBackoff ?? DEFAULTS.casBaseBackoff,
      maxBackoff: opts.maxBackoff ?? DEFAULTS.casMaxBackoff,
      ttl: opts.ttl ?? 0,
    };
    const start = performance.now();
    let attempts = 0;
    while (attempts < Math.max(1, o.maxAttempts)) {
      attempts += 1;
      const done = this._replicated ? await this._rcasOnce(k, fn, o, attempts) : await this._casOnce(k, fn, o, attempts);
      if (done !== null) return done;
      const elapsed = performance.now() - start;
      if (elapsed >= o.deadline) break;
      await sleep(Math.min(wasm.backoff(attempts, o.baseBackoff, o.maxBackoff, Math.random()), o.deadline - elapsed));
    }
    throw toError(wasm.recipeError('CasRetriesExhausted', keyName(key), attempts, 0, ''));
  }

  /** One plain attempt: the outcome, or null after a lost race. */
  async _casOnce(k, fn, o, attempts) {
    const s = this._route(k);
    const cur = rethrow(await this._call(s, (c) => c.get(k, true, undefined, true)));
    const next = await fn(cur === null ? null : out(cur.value));
    let r;
    let outcome = 'stored';
    if (next === undefined) return { outcome: 'unchanged', attempts };
    if (next === DELETE) {
      if (cur === null) return { outcome: 'deleted', attempts };
      outcome = 'deleted';
      r = await this._call(s, (c) => c.casDelete(k, cur.cas));
    } else if (cur === null) {
      r = await this._call(s, (c) => c.storeValue('add', k, next, o.ttl, undefined));
    } else {
      r = await this._call(s, (c) => c.storeValue('cas', k, next, o.ttl, cur.cas));
    }
    if (r === true) return { outcome, attempts };
    if (wasm.isCasConflict(r)) return null;
    throw toError(r);
  }

  /** One replicated attempt, serialized by CAS on the primary replica (the core's
   *  ReplicatedClient::cas_update): the outcome, or null to retry. */
  async _rcasOnce(k, fn, o, attempts) {
    const core = this._core;
    const servers = core.replicasOf(k, performance.now());
    const copies = await this._fetchCopies(k, servers);
    if (copies[0] instanceof Error) throw toError(copies[0]);
    const primary = copies[0];
    let res;
    try {
      res = core.resolve(copies, Date.now(), true);
    } catch (e) {
      throw toError(e);
    }
    const latest = res.winner === undefined ? null : copies[res.winner];
    if (latest !== null && (primary === null || !sameBytes(primary.data, latest.data))) {
      // The primary must hold the latest copy before it can serialize an update of it.
      const rep = res.repairs.find((r) => r.replica === 0);
      if (rep) await this._repair([[servers[0], [k, latest.data, latest.flags, rep.ttl, rep.mode, rep.cas]]]);
      return null;
    }
    if (res.error) throw toError(res.error);
    const next = await fn(res.found ? out(res.value) : null);
    if (next === undefined) return { outcome: 'unchanged', attempts, report: { stored: [], failed: [] } };
    let env;
    let ttl = o.ttl;
    let outcome = 'stored';
    if (next === DELETE) {
      if (!res.found) return { outcome: 'deleted', attempts, report: { stored: [], failed: [] } };
      env = core.tombstone(Date.now());
      ttl = core.tombstoneTtl;
      outcome = 'deleted';
    } else {
      env = core.envelope(next, Date.now());
    }
    const first = primary === null ? [k, env, 0, ttl, 'add'] : [k, env, 0, ttl, 'cas', primary.cas];
    const r = await this._call(servers[0], (c) => c.storeItems([first]));
    const r0 = r instanceof Error ? r : r[0];
    if (r0 !== true) {
      if (wasm.isCasConflict(r0)) return null;
      throw toError(r0);
    }
    const rest = await Promise.all(
      Array.from(servers.subarray(1), (s) =>
        settle(this._call(s, (c) => c.storeItems([[k, env, 0, ttl, 'set']]))).then((x) => (x instanceof Error ? x : x[0])),
      ),
    );
    const report = { stored: [core.address(servers[0])], failed: [] };
    rest.forEach((x, i) => {
      const addr = core.address(servers[i + 1]);
      if (x === true) report.stored.push(addr);
      else report.failed.push({ server: addr, error: toError(x) });
    });
    return { outcome, attempts, report };
  }

  /**
   * Take the lock `name`: an `add` of a unique owner token on the name's ring owner only,
   * retried with jittered backoff for up to `wait` ms. Rejects with LockNotAcquiredError when
   * someone held it the whole time, or with the server's error (never another server).
   */
  async lock(name, opts = {}) {
    const ttl = opts.ttl ?? 30;
    const wait = opts.wait ?? 5000;
    const base = opts.baseBackoff ?? DEFAULTS.lockBaseBackoff;
    const max = opts.maxBackoff ?? DEFAULTS.lockMaxBackoff;
    if (!(ttl >= 1)) {
      throw toError(
        wasm.recipeError('Config', '', 0, 0, 'a lock needs a TTL of at least one second, or a crashed holder would keep it forever'),
      );
    }
    const k = toKey(name);
    const s = this._route(k);
    const token = this._core.ownerToken();
    const tokenBytes = Buffer.from(token);
    const start = performance.now();
    let attempts = 0;
    for (;;) {
      attempts += 1;
      const r = await this._call(s, (c) => c.storeReturningCas('add', k, tokenBytes, ttl, undefined));
      if (typeof r === 'bigint') {
        const lock = new Lock(this, s, k, name, token, r);
        if (opts.fencing) lock.fence = await this._nextFence(k);
        return lock;
      }
      if (!wasm.isLockBusy(r)) throw toError(r);
      const waited = performance.now() - start;
      if (waited >= wait) throw toError(wasm.recipeError('LockNotAcquired', keyName(name), attempts, waited, ''));
      await sleep(Math.min(wasm.backoff(attempts, base, max, Math.random()), wait - waited));
    }
  }

  async _nextFence(name) {
    const k = Buffer.from(wasm.fenceKey(name));
    const s = this._route(k);
    for (let i = 0; i < 3; i++) {
      const n = rethrow(await this._call(s, (c) => c.arith(k, true, 1)));
      if (n !== null) return n;
      const r = await this._call(s, (c) => c.store('add', k, Buffer.from('1'), 0, 0, undefined));
      if (r === true) return 1;
      if (r.kind !== 'NotStored') throw toError(r);
    }
    throw toError(wasm.recipeError('CasRetriesExhausted', keyName(k), 3, 0, ''));
  }

  /**
   * The value of `key`, loading and storing it on a miss with protection against miss
   * storms: concurrent callers in this process share one load; across processes, one takes a
   * fill lock and loads while the others wait for its value (up to `wait` ms) before loading
   * themselves. The stored TTL gets ±`ttlJitter` jitter.
   */
  async getOrSet(key, loader, opts = {}) {
    const hit = await this.get(key);
    if (hit !== null) return hit;
    const name = keyName(toKey(key));
    const inflight = this._flights.get(name);
    if (inflight) return inflight;
    const p = this._fill(key, loader, opts).finally(() => this._flights.delete(name));
    this._flights.set(name, p);
    return p;
  }

  async _fill(key, loader, opts) {
    const o = {
      ttl: ttlOf(opts),
      wait: opts.wait ?? DEFAULTS.fillWait,
      poll: opts.poll ?? DEFAULTS.fillPoll,
      fillLockTtl: opts.fillLockTtl ?? DEFAULTS.fillLockTtl,
      ttlJitter: opts.ttlJitter ?? DEFAULTS.ttlJitter,
    };
    const k = toKey(key);
    const lockKey = Buffer.from(wasm.fillKey(k));
    const ls = this._route(lockKey);
    const token = Buffer.from(this._core.ownerToken());
    let held = false;
    const r = await this._call(ls, (c) => c.store('add', lockKey, token, 0, Math.max(1, o.fillLockTtl), undefined));
    if (r === true) {
      held = true;
      // Someone may have filled it between our miss and our lock.
      const v = await this.get(key);
      if (v !== null) {
        await settle(this._call(ls, (c) => c.delete(lockKey)));
        return v;
      }
    } else if (r.kind === 'NotStored') {
      const start = performance.now();
      let attempts = 0;
      while (performance.now() - start < o.wait) {
        attempts += 1;
        const pause = wasm.backoff(attempts, o.poll, o.poll * 8, 0.5 + Math.random() / 2);
        await sleep(Math.min(pause, o.wait - (performance.now() - start)));
        const v = await this.get(key);
        if (v !== null) return v;
      }
    } else {
      throw toError(r);
    }
    let value;
    try {
      value = await loader();
    } catch (e) {
      if (held) await settle(this._call(ls, (c) => c.delete(lockKey)));
      const err = toError(wasm.recipeError('Loader', '', 0, 0, e && e.message ? e.message : String(e)));
      err.cause = e;
      throw err;
    }
    const ttl = wasm.jitterTtl(o.ttl, o.ttlJitter, Math.random());
    const stored = await settle(this.set(key, value, { ttl }));
    if (held) await settle(this._call(ls, (c) => c.delete(lockKey)));
    if (stored instanceof Error) throw toError(stored);
    return value;
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
    return this._everyServer((c) => c.stats(group));
  }

  /** `version` of every server: Map address → string (or Error). */
  version() {
    return this._everyServer((c) => c.version());
  }

  /** `flush_all` on every server; rejects if any failed. */
  async flushAll(delay) {
    const m = await this._everyServer((c) => c.flushAll(delay));
    for (const r of m.values()) if (r instanceof Error) throw r;
  }

  /** Close every connection; pending calls fail with ConnectionClosedError. */
  close() {
    this._closed = true;
    for (const c of this._conns) if (c !== null) c.close();
  }
}

/** A held lock. `release()` deletes it only if it is still ours (compare-and-delete). */
class Lock {
  constructor(client, server, key, name, token, cas) {
    this._client = client;
    this._server = server;
    this._key = key;
    this.name = name;
    this.token = token;
    this._cas = cas;
    this.held = true;
    this.fence = undefined;
  }

  /** true: released; false: it had expired (and may belong to someone else: left alone). */
  async release() {
    if (!this.held) return false;
    this.held = false;
    const r = await this._client._call(this._server, (c) => c.casDelete(this._key, this._cas));
    if (r === true) return true;
    if (r.kind === 'Exists' || r.kind === 'NotFound') return false;
    throw toError(r);
  }

  /** Give the lock a new TTL if it is still ours (false if not). */
  async extend(ttl) {
    if (!this.held) return false;
    const token = Buffer.from(this.token);
    const r = await this._client._call(this._server, (c) => c.storeReturningCas('cas', this._key, token, ttl, this._cas));
    if (typeof r === 'bigint') {
      this._cas = r;
      return true;
    }
    if (r.kind === 'Exists' || r.kind === 'NotFound') {
      this.held = false;
      return false;
    }
    throw toError(r);
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
