// The ESM entry gives the same objects as the CommonJS one (one WebAssembly instance).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import multiput, { Client, core, DELETE, NotStoredError, MultiputError } from '../index.mjs';

const require = createRequire(import.meta.url);

test('ESM and CommonJS entries export the same objects', () => {
  const cjs = require('../index.js');
  assert.equal(Client, cjs.Client);
  assert.equal(core, cjs.core);
  assert.equal(DELETE, cjs.DELETE);
  assert.equal(multiput.Client, Client);
  assert.ok(new NotStoredError('x') instanceof MultiputError);
  assert.equal(require('../package.json').name, 'multiput');
  const ring = new core.Ring(['192.0.2.11:11211', '192.0.2.12:11211', '192.0.2.13:11211']);
  assert.equal(ring.address(ring.serverFor(Buffer.from('foo'))), '192.0.2.13:11211');
});
