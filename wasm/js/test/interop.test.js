'use strict';
// Values written by the Rust core (the `multiput` CLI) read in Node and the reverse, plain and
// replicated; the same with the Python binding when the repo's .venv has it.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Client, core } = require('..');
const { REPO, startServers, stopServers, cliPath, cli, rawGet } = require('../support/harness');

let servers;
let addrs;
test.before(async () => {
  servers = await startServers(3);
  addrs = servers.map((s) => s.address);
});
test.after(async () => {
  await stopServers(servers);
});

const ok = (r) => {
  assert.equal(r.status, 0, `multiput exited ${r.status}: ${r.stderr}`);
  return r.stdout;
};

test('the Rust CLI is built (cargo build -p multiput-cli)', () => {
  assert.ok(cliPath(), `no CLI at ${path.join(REPO, 'target', 'debug', 'multiput')}: run cargo build -p multiput-cli`);
});

test('placement: the CLI and the Node client agree on every key\'s replicas', () => {
  const keys = Array.from({ length: 200 }, (_, i) => `ring:${i}:é`);
  const out = ok(cli(['ring', '--servers', addrs.join(','), '--replicas', '2', ...keys])).toString();
  const c = new Client(addrs, { replicas: 2 });
  const lines = out.trim().split('\n');
  assert.equal(lines.length, keys.length);
  lines.forEach((line, i) => {
    const [key, ...reps] = line.split('\t');
    assert.equal(key, keys[i]);
    assert.deepEqual(c.replicasOf(key), reps);
  });
  c.close();
});

test('plain values: Rust writes, Node reads; Node writes, Rust reads', async () => {
  const c = new Client(addrs);
  ok(cli(['--servers', addrs.join(','), 'set', 'x:plain', 'from rust ✓']));
  assert.deepEqual(await c.get('x:plain'), Buffer.from('from rust ✓'));
  await c.set('x:plain2', Buffer.from([0, 1, 2, 255]));
  assert.deepEqual(ok(cli(['--servers', addrs.join(','), 'get', 'x:plain2'])), Buffer.from([0, 1, 2, 255]));
  await c.set('x:plain3', 'from node');
  assert.equal(ok(cli(['--servers', addrs.join(','), 'get', 'x:plain3'])).toString(), 'from node');
  c.close();
});

test('replicated values: Rust writes, Node reads the latest copy; Node writes, Rust reads', async () => {
  const c = new Client(addrs, { replicas: 2 });
  const args = ['--servers', addrs.join(','), '--replicas', '2'];
  ok(cli([...args, 'set', 'x:rep', 'Ada from rust']));
  assert.deepEqual(await c.get('x:rep'), Buffer.from('Ada from rust')); // the CLI writes bytes
  await c.set('x:rep', 'Ada from node ✓');
  assert.equal(ok(cli([...args, 'get', 'x:rep'])).toString(), 'Ada from node ✓');
  // A later Rust write beats the Node one; a Rust delete is a tombstone Node respects.
  ok(cli([...args, 'set', 'x:rep', 'rust again']));
  assert.deepEqual(await c.get('x:rep'), Buffer.from('rust again'));
  ok(cli([...args, 'delete', 'x:rep']));
  assert.equal(await c.get('x:rep'), null);
  for (const s of servers) {
    const got = await rawGet(s.port, 'x:rep');
    if (got) assert.equal(core.envelopeDecode(got.data).kind, 1);
  }
  await c.delete('x:rep2');
  const r = cli([...args, 'get', 'x:rep2']);
  assert.equal(r.status, 1); // a Node tombstone is a miss for Rust
  c.close();
});

function python() {
  const py = process.env.MULTIPUT_PYTHON || path.join(REPO, '.venv', 'bin', 'python');
  if (!fs.existsSync(py)) return { py: null, why: `no Python at ${py}` };
  const r = spawnSync(py, ['-c', 'import multiput; multiput.Client'], { encoding: 'utf8' });
  if (r.status !== 0) return { py: null, why: `multiput is not importable from ${py}: ${r.stderr.trim().split('\n').pop()}` };
  return { py, why: '' };
}

const { py, why } = python();

test('Python binding: typed values cross in both directions, plain and replicated', { skip: py ? false : why }, async () => {
  const script = `
import json, sys, multiput
addrs, mode, step = sys.argv[1].split(','), sys.argv[2], sys.argv[3]
c = multiput.Client(addrs, replicas=2) if mode == 'rep' else multiput.Client(addrs)
if step == 'write':
    c.set('py:s', 'héllo ✓'); c.set('py:i', -42); c.set('py:f', 0.25); c.set('py:t', True); c.set('py:b', b'\\x00\\xff')
    c.set('py:big', 2**62)
else:
    out = {}
    for k in ['js:s', 'js:i', 'js:f', 'js:t', 'js:b', 'js:big']:
        v = c.get(k)
        out[k] = [type(v).__name__, v.hex() if isinstance(v, bytes) else v]
    print(json.dumps(out))
`;
  for (const mode of ['rep', 'plain']) {
    const run = (step) => {
      const r = spawnSync(py, ['-c', script, addrs.join(','), mode, step], { encoding: 'utf8', timeout: 20000 });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    run('write');
    const c = mode === 'rep' ? new Client(addrs, { replicas: 2 }) : new Client(addrs);
    // Plain: multiput's own flags type every value; in replicated mode the envelope does.
    assert.equal(await c.get('py:s'), 'héllo ✓');
    assert.equal(await c.get('py:i'), -42);
    assert.equal(await c.get('py:f'), 0.25);
    assert.equal(await c.get('py:t'), true);
    assert.deepEqual(await c.get('py:b'), Buffer.from([0, 255]));
    assert.equal(await c.get('py:big'), 2n ** 62n);
    await c.setMulti([['js:s', 'héllo ✓'], ['js:i', -42], ['js:f', 0.25], ['js:t', true], ['js:b', Buffer.from([0, 255])], ['js:big', 2n ** 62n]]);
    const seen = JSON.parse(run('read'));
    // Plain strings carry multiput's text flags (the default convention): Python reads str.
    assert.deepEqual(seen['js:s'], ['str', 'héllo ✓']);
    assert.deepEqual(seen['js:i'], ['int', -42]);
    assert.deepEqual(seen['js:f'], ['float', 0.25]);
    assert.deepEqual(seen['js:t'], ['bool', true]);
    assert.deepEqual(seen['js:b'], ['bytes', '00ff']);
    assert.deepEqual(seen['js:big'], ['int', 2 ** 62]);
    c.close();
  }
});

test('compressed plain values: pylibmc/pymemcache zlib (flag 8) and PECL zlib read in Node, get and getMulti', async () => {
  const zlib = require('node:zlib');
  const { raw } = require('../support/harness');
  const text = 'compressible '.repeat(400);
  const store = async (key, data, flags) => {
    const c = new Client(addrs);
    const [addr] = c.replicasOf(key);
    c.close();
    const port = Number(addr.split(':')[1]);
    const head = Buffer.from(`set ${key} ${flags} 0 ${data.length}\r\n`);
    const r = await raw(port, Buffer.concat([head, data, Buffer.from('\r\n')]), /\r\n$/);
    assert.equal(r.toString(), 'STORED\r\n');
  };
  // Python: zlib.compress(text) with pymemcache's text flag (16) and the zlib flag (8).
  await store('z:py', zlib.deflateSync(Buffer.from(text)), 16 | 8);
  // PECL: the original length (32-bit little-endian), then the zlib stream; flags
  // compressed (16) | zlib (32) | type 0 (string).
  const len = Buffer.alloc(4);
  len.writeUInt32LE(Buffer.byteLength(text));
  await store('z:php', Buffer.concat([len, zlib.deflateSync(Buffer.from(text))]), 16 | 32);
  // A corrupt stream is an error naming the problem, not garbage or a crash.
  await store('z:bad', Buffer.from('not zlib at all'), 16 | 8);

  const py = new Client(addrs);
  assert.equal(await py.get('z:py'), text);
  const many = await py.getMulti(['z:py', 'z:php-absent']);
  assert.equal(many.get('z:py'), text);
  assert.equal(many.has('z:php-absent'), false);
  await assert.rejects(py.get('z:bad'), /inflate/);
  py.close();
  const php = new Client(addrs, { convention: 'php' });
  assert.deepEqual(await php.get('z:php'), Buffer.from(text));
  php.close();
});
