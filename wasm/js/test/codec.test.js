'use strict';
// The WASM codec without a server: bytes out, replies fed in chunks, results in order.
const test = require('node:test');
const assert = require('node:assert/strict');
const { core } = require('..');

const txt = (b) => Buffer.from(b).toString('latin1');
const k = (s) => Buffer.from(s);

function codec(protocol = 'auto', convention = 'python') {
  return new core.Codec('127.0.0.1:1', new Uint8Array(), 1024 * 1024, protocol, convention);
}

function feedAll(c, bytes, chunk = 1) {
  const out = [];
  const b = Buffer.from(bytes, 'latin1');
  for (let i = 0; i < b.length; i += chunk) {
    c.feed(b.subarray(i, i + chunk));
    for (let r; (r = c.poll()) !== undefined; ) out.push(r);
  }
  return out;
}

test('probe: version + mn; MN means meta, ERROR means text', () => {
  const c = codec();
  assert.equal(txt(c.probe()), 'version\r\nmn\r\n');
  assert.deepEqual(feedAll(c, 'VERSION 1.6.18\r\nMN\r\n'), [{ version: '1.6.18', dialect: 'meta' }]);
  assert.equal(c.dialect, 'meta');
  const old = codec();
  old.probe();
  assert.deepEqual(feedAll(old, 'VERSION 1.4.5\r\nERROR\r\n', 3), [{ version: '1.4.5', dialect: 'text' }]);
  const forced = codec('meta');
  forced.probe();
  assert.throws(() => feedAll(forced, 'VERSION 1.4.5\r\nERROR\r\n'), (e) => e.kind === 'Unsupported');
  const text = codec('text');
  assert.equal(txt(text.probe()), 'version\r\n');
});

test('meta requests and replies, byte by byte, in order', () => {
  const c = codec();
  c.probe();
  feedAll(c, 'VERSION 1.6.18\r\nMN\r\n');
  assert.equal(txt(c.get(k('a'), false, undefined, true)), 'mg a v f k\r\n');
  assert.equal(txt(c.storeValue('set', k('b'), 'hi', 60, undefined)), 'ms b 2 T60\r\nhi\r\n');
  assert.equal(txt(c.storeValue('add', k('n'), 42, 0, undefined)), 'ms n 2 F2 ME\r\n42\r\n');
  assert.equal(txt(c.delete(k('a'))), 'md a\r\n');
  assert.equal(txt(c.arith(k('n'), true, 5)), 'ma n D5 v\r\n');
  assert.equal(c.pending, 5);
  const rs = feedAll(c, 'VA 2 f0 ka\r\nhi\r\nHD\r\nNS\r\nNF\r\nVA 2\r\n47\r\n');
  assert.equal(rs.length, 5);
  assert.equal(Buffer.from(rs[0]).toString(), 'hi');
  assert.equal(rs[1], true);
  assert.ok(rs[2] instanceof Error && rs[2].kind === 'NotStored');
  assert.equal(rs[3], false);
  assert.equal(rs[4], 47);
  assert.equal(c.pending, 0);
});

test('typed reads: envelope-aware, tombstones are misses, flags by convention', () => {
  const c = codec();
  c.probe();
  feedAll(c, 'VERSION 1.6.18\r\nMN\r\n');
  const env = core.envelopeEncode(5n, 9n, 0, 1, 0, Buffer.from('Ada'));
  const tomb = core.envelopeTombstone(6n, 9n);
  for (let i = 0; i < 5; i++) c.get(k(`k${i}`), false, undefined, true);
  const reply = Buffer.concat([
    Buffer.from(`VA ${env.length} f0 kk0\r\n`), Buffer.from(env), Buffer.from('\r\n'),
    Buffer.from(`VA ${tomb.length} f0 kk1\r\n`), Buffer.from(tomb), Buffer.from('\r\n'),
    Buffer.from('VA 2 f16 kk2\r\nhi\r\n'), // pymemcache text
    Buffer.from('VA 3 f2 kk3\r\n-17\r\n'), // python int
    Buffer.from('EN\r\n'),
  ]);
  const rs = feedAll(c, reply.toString('latin1'), 7);
  assert.deepEqual(rs, ['Ada', null, 'hi', -17, null]);
});

test('text protocol multi-get keeps order and aligns misses', () => {
  const c = codec('text');
  c.probe();
  feedAll(c, 'VERSION 1.4.5\r\n');
  assert.equal(txt(c.getMulti(['a', k('b'), 'c'], false, false, false)), 'get a b c\r\n');
  const [r] = feedAll(c, 'VALUE a 0 1\r\nx\r\nVALUE c 5 2\r\nyz\r\nEND\r\n', 4);
  assert.equal(r.length, 3);
  assert.equal(Buffer.from(r[0].data).toString(), 'x');
  assert.equal(r[1], null);
  assert.equal(r[2].flags, 5);
});

test('invalid keys and oversized values are refused before anything is queued', () => {
  const c = codec();
  assert.throws(() => c.get(k('bad key'), false, undefined, true), (e) => e.kind === 'InvalidKey');
  assert.throws(() => c.get(k(''), false, undefined, true), (e) => e.kind === 'InvalidKey');
  assert.throws(() => c.get(k('x'.repeat(251)), false, undefined, true), (e) => e.kind === 'InvalidKey');
  assert.throws(() => c.store('set', k('a'), new Uint8Array(1024 * 1024 + 1), 0, 0), (e) => e.kind === 'ValueTooLarge');
  assert.throws(() => c.storeValue('set', k('a'), null, 0), (e) => e.kind === 'Config');
  assert.equal(c.pending, 0);
});

test('a reply for another key is a protocol error, never a value', () => {
  const c = codec();
  c.probe();
  feedAll(c, 'VERSION 1.6.18\r\nMN\r\n');
  c.get(k('a'), false, undefined, true);
  // Thrown, not returned: the connection that carried it must be dropped.
  assert.throws(() => feedAll(c, 'VA 2 f0 kother\r\nhi\r\n'), (e) => e.kind === 'Protocol');
  const t = codec('text');
  t.probe();
  feedAll(t, 'VERSION 1.4.5\r\n');
  t.get(k('a'), false, undefined, true);
  assert.throws(() => feedAll(t, 'VALUE other 0 2\r\nhi\r\nEND\r\n'), (e) => e.kind === 'Protocol');
});

test('garbage and unsolicited bytes are protocol errors', () => {
  const c = codec();
  c.probe();
  feedAll(c, 'VERSION 1.6.18\r\nMN\r\n');
  c.feed(Buffer.from('HD\r\n'));
  assert.throws(() => c.poll(), (e) => e.kind === 'Protocol');
  const d = codec();
  d.probe();
  feedAll(d, 'VERSION 1.6.18\r\nMN\r\n');
  d.get(k('a'), false, undefined, true);
  d.feed(Buffer.from('VA 99999999999 f0\r\n'));
  assert.throws(() => d.poll(), (e) => e.kind === 'Protocol');
});

test('server errors are results, with the server named', () => {
  const c = codec();
  c.probe();
  feedAll(c, 'VERSION 1.6.18\r\nMN\r\n');
  c.store('set', k('a'), Buffer.from('x'), 0, 0);
  const [r] = feedAll(c, 'SERVER_ERROR out of memory storing object\r\n');
  assert.ok(r instanceof Error);
  assert.equal(r.kind, 'Server');
  assert.equal(r.server, '127.0.0.1:1');
  assert.match(r.message, /out of memory/);
  // The server's "too large" is the same typed error as the client's own size check.
  c.store('set', k('b'), Buffer.from('xyz'), 0, 0);
  const [big] = feedAll(c, 'SERVER_ERROR object too large for cache\r\n');
  assert.equal(big.kind, 'ValueTooLarge');
  assert.match(big.message, /refused by the server/);
});

test('recipes: backoff is full jitter over a doubling, capped window', () => {
  assert.equal(core.backoff(1, 1, 50, 1), 1);
  assert.equal(core.backoff(3, 1, 50, 1), 4);
  assert.equal(core.backoff(30, 1, 50, 1), 50);
  assert.equal(core.backoff(5, 1, 50, 0), 0);
  assert.equal(core.jitterTtl(100, 0.1, 0), 90);
  assert.equal(core.jitterTtl(100, 0.1, 1), 110);
  assert.equal(core.jitterTtl(0, 0.1, 0.5), 0);
  assert.equal(Buffer.from(core.fenceKey(k('L'))).toString(), 'L:fence');
  assert.equal(core.isCasConflict(core.recipeError('Exists', '', 0, 0, '')), true);
  assert.equal(core.isCasConflict(core.ioError('timeout', 'x', '', 5, 'read')), false);
});
