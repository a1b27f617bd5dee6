'use strict';
// The ketama contract: every case of every ketama vector file (docs/vectors/ring/ketama_*.json,
// made by libmemcached) must map to the server libmemcached picks, through the WASM ring and
// through the Client's routing.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { core, Client } = require('..');
const { RING_VECTORS } = require('../support/harness');

const list = (dir) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : []);
const files = list(RING_VECTORS).filter((f) => process.env.MULTIPUT_VECTORS_DIR || f.startsWith('ketama_'));
// The repo's modula vectors (libmemcached's default distribution, made with php-memcached).
const MODULA = path.join(__dirname, '..', '..', '..', 'docs', 'vectors', 'ring');
const modulaFiles = list(MODULA).filter((f) => f.startsWith('modula_'));
// The repo's pymemcache vectors (rendezvous hashing, made with pymemcache's HashClient).
const PYMEMCACHE = path.join(__dirname, '..', '..', '..', 'docs', 'vectors', 'pymemcache');
const pymemcacheFiles = list(PYMEMCACHE);

test('the repo modula vectors are there', () => {
  assert.ok(modulaFiles.length >= 4, `expected modula vectors in ${MODULA}`);
});

test('the repo pymemcache vectors are there', () => {
  assert.ok(pymemcacheFiles.length >= 5, `expected pymemcache vectors in ${PYMEMCACHE}`);
});

test('the ketama ring vectors are there', () => {
  assert.ok(files.length >= 7, `expected the ring vectors in ${RING_VECTORS}, found ${files.length} files`);
});

const spec = (s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}:${s.weight}`;

for (const [dir, file] of [...files.map((f) => [RING_VECTORS, f]), ...modulaFiles.map((f) => [MODULA, f]), ...pymemcacheFiles.map((f) => [PYMEMCACHE, f])]) {
  test(`ring vectors ${file}`, () => {
    const v = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    assert.ok(v.cases.length > 0, 'a vector file without cases');
    const ring = new core.Ring(v.servers, v.mode);
    const fromStrings = new core.Ring(v.servers.map(spec), v.mode);
    const client = new Client(v.servers, { ringMode: v.mode });
    const addr = v.servers.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port || 11211}`);
    let wrong = 0;
    for (const c of v.cases) {
      const key = Buffer.from(c.key, 'utf8');
      const i = ring.serverFor(key);
      if (addr[i] !== c.server) wrong++;
      assert.equal(fromStrings.serverFor(key), i);
      // The preference list starts with the owner, and the client routes there.
      assert.equal(ring.preferenceList(key, 2)[0], i);
      assert.deepEqual(client.replicasOf(c.key), [c.server]);
    }
    assert.equal(wrong, 0, `${wrong} of ${v.cases.length} keys placed on another server than libmemcached's`);
    client.close();
    ring.free();
    fromStrings.free();
  });
}

test('preference lists: distinct servers, as many as asked, capped by the server count', () => {
  const servers = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11212', '10.0.0.4:11211'];
  for (const mode of ['libketama_compatible', 'ketama_md5']) {
    const ring = new core.Ring(servers, mode);
    assert.equal(ring.mode, mode);
    for (let k = 0; k < 200; k++) {
      const key = Buffer.from(`user:${k}`);
      const l = Array.from(ring.preferenceList(key, 3));
      assert.equal(l.length, 3);
      assert.equal(new Set(l).size, 3);
      assert.equal(l[0], ring.serverFor(key));
      assert.deepEqual(Array.from(ring.preferenceList(key, 9)).slice(0, 3), l);
      assert.equal(ring.preferenceList(key, 9).length, 4);
    }
  }
  assert.throws(() => new core.Ring(servers, 'modulo'), (e) => e.kind === 'Config');
});

test('a replicated client places copies on the first N servers of the preference list', () => {
  const servers = ['192.0.2.1:11211', '192.0.2.2:11211', '192.0.2.3:11211'];
  const ring = new core.Ring(servers);
  const c = new Client(servers, { replicas: 2 });
  for (let k = 0; k < 100; k++) {
    const want = Array.from(ring.preferenceList(Buffer.from(`k${k}`), 2), (i) => ring.address(i));
    assert.deepEqual(c.replicasOf(`k${k}`), want);
  }
  c.close();
});
