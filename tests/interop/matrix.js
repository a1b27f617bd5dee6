#!/usr/bin/env node
'use strict';
// The Node side of tests/interop/matrix.py: `write SERVERS PREFIX` stores the matrix's values
// with a default Client and prints their names; `read SERVERS PREFIX NAME...` prints what each
// reads as, as JSON: name -> [category, value] or ["error", kind, message].

const path = require('node:path');
const { Client } = require(path.join(__dirname, '..', '..', 'wasm', 'js'));

const STRUCT = { a: [1, 2], b: 'c' };
const VALUES = {
  text: 'héllo wörld ✓',
  empty_text: '',
  bytes: Buffer.from('00ff7261770a', 'hex'),
  int: 42,
  negative: -7,
  big: 2n ** 62n,
  float: 1.5,
  small_float: -0.25,
  true: true,
  false: false,
  struct: STRUCT,
};

function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
  }
  return v;
}

// Python's json.dumps(sort_keys=True) spacing, so the orchestrator compares strings.
function pyJson(v) {
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}: ${pyJson(v[k])}`).join(', ')}}`;
  }
  return JSON.stringify(v);
}

function category(v) {
  if (typeof v === 'string') return ['text', v];
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return ['bytes', Buffer.from(v).toString('hex')];
  if (typeof v === 'boolean') return ['bool', v];
  if (typeof v === 'bigint') return ['int', v.toString()];
  if (typeof v === 'number') return Number.isInteger(v) ? ['int', String(v)] : ['float', v];
  return ['struct', pyJson(sorted(v))];
}

async function main([action, servers, prefix, ...names]) {
  const client = new Client(servers); // default settings, as an app would have them
  try {
    if (action === 'write') {
      for (const [name, value] of Object.entries(VALUES)) await client.set(prefix + name, value);
      console.log(Object.keys(VALUES).join(' '));
      return;
    }
    const out = {};
    for (const name of names) {
      try {
        const v = await client.get(prefix + name);
        out[name] = v === null ? ['missing'] : category(v);
      } catch (e) {
        out[name] = ['error', String(e.kind).toLowerCase(), e.message];
      }
    }
    console.log(JSON.stringify(out));
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
