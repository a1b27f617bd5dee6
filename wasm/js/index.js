'use strict';
// multiput for Node: a replicated memcached client whose logic (codec, ring, envelope,
// replication, retry and lock rules) is multiput's Rust core compiled to WebAssembly, and whose
// I/O (node:net sockets) is here. See README.md and index.d.ts.

const { Client, Lock, DELETE } = require('./lib/client');
const errors = require('./lib/errors');
const wasm = require('./lib/wasm');

/** The logic layer itself (codec, ring, envelope, clock, replication decisions), for tools
 *  and tests: the exports of the wasm-bindgen module. */
const core = wasm;

module.exports = {
  Client,
  Lock,
  DELETE,
  core,
  MultiputError: errors.MultiputError,
  toError: errors.toError,
  ...Object.fromEntries(Object.entries(errors).filter(([k]) => k.endsWith('Error') && k !== 'toError')),
};
