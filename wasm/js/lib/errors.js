'use strict';
// One error hierarchy: every failure is a MultiputError whose `kind` is the core's stable
// ErrorKind name; each kind has its own subclass so callers can `instanceof` what they handle.

class MultiputError extends Error {
  constructor(message, fields) {
    super(message);
    this.name = new.target.name;
    /** The core's error kind, e.g. "NotStored", "Timeout", "Replication". */
    this.kind = 'Error';
    if (fields) {
      for (const k of Object.keys(fields)) {
        if (k === 'message' || k === 'stack' || k === 'name') continue;
        this[k] = fields[k];
      }
    }
  }
}

const KINDS = [
  'InvalidKey', 'ValueTooLarge', 'NotStored', 'Exists', 'NotFound', 'Server', 'Client',
  'Timeout', 'ConnectionRefused', 'ConnectionClosed', 'ServerDown', 'Protocol', 'Unsupported',
  'Replication', 'CasRetriesExhausted', 'LockNotAcquired', 'Loader', 'Config', 'Undecodable',
  'Auth', 'Tls',
];

const classes = { MultiputError };
const byKind = Object.create(null);
for (const kind of KINDS) {
  const name = `${kind}Error`;
  const cls = {
    [name]: class extends MultiputError {
      constructor(message, fields) {
        super(message, fields);
        this.kind = kind;
      }
    },
  }[name];
  classes[name] = cls;
  byKind[kind] = cls;
}

/**
 * The MultiputError for an error object made by the WASM core (a plain Error with `kind` and
 * the variant's fields). Anything else is returned unchanged.
 */
function toError(e) {
  if (e instanceof MultiputError || e === null || typeof e !== 'object') return e;
  const kind = e.kind;
  if (typeof kind !== 'string') return e;
  const cls = byKind[kind] || MultiputError;
  const fields = {};
  for (const k of Object.keys(e)) fields[k] = e[k];
  if (Array.isArray(fields.failures)) {
    fields.failures = fields.failures.map((f) => ({ server: f.server, error: toError(f.error) }));
  }
  const err = new cls(e.message, fields);
  err.kind = kind;
  return err;
}

module.exports = { ...classes, toError, KINDS };
