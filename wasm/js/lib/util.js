'use strict';
// Helpers of the Node client: key and value conversions, error mapping, multi-key results.

const { webcrypto } = require('node:crypto');
const wasm = require('./wasm');
const { toError } = require('./errors');

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

/** A WriteReport `{stored, failed}` from the core's `[stored, failed]` (copied: the core
 *  hands out the same arrays for every plain write to one server). */
function report([stored, failed]) {
  return { stored: stored.slice(), failed: failed.map((f) => ({ server: f.server, error: toError(f.error) })) };
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

module.exports = {
  DELETE, randomU64, toKey, keyName, out, ttlOf, sleep, mapError, mapErrors, settle, pack, report,
  entriesOf, multiError, settleMulti,
};
