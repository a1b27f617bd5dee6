'use strict';
// The WASM codec without a server: bytes out, replies fed in chunks, results in order.
const test = require('node:test');
const assert = require('node:assert/strict');
const { core } = require('..');

const txt = (b) => Buffer.from(b).toString('latin1');
const k = (s) => Buffer.from(s);

const T0 = 1000; // the codec's clock (ms), as performance.now() would give it

// A codec of a one-server client; `c.core` is that client's Core, whose calls are jobs.
function codec(protocol = 'auto', convention = 'pylibmc', timeout = 100, connectTimeout = 500) {
  const cr = new core.Core({ servers: ['127.0.0.1:1'], protocol, convention, timeout, connectTimeout, writerId: 1n });
  const c = cr.connection(0, T0);
  c.core = cr;
  return c;
}

const SEND_ONE = 8; // the step of a one-request call (job.rs)
const FAILED = 5;

// Make a call of the codec's Core (`install(core, job)`) and put its one request on the codec
// at `now`: the waiter gets the call's value (or its Error) as its result.
function req(c, install, waiter = {}, now = T0) {
  const job = new core.Job();
  const step = install(c.core, job);
  if (step === FAILED) throw job.value();
  assert.ok(step >= SEND_ONE, `a one-request call (step ${step})`);
  c.call(job, 0, waiter, now);
  return waiter;
}
const get = (key, versions = false) => (cr, j) => cr.get(j, k(key), versions);
const set = (key, value, ttl = 0) => (cr, j) => cr.set(j, k(key), value, ttl);
const store = (mode, key, value, ttl = 0) => (cr, j) => cr.store(j, mode, k(key), value, ttl, undefined, 0);

// Feed `bytes` `chunk` at a time; returns the results in order (`'ready'` for the probe).
function feedAll(c, bytes, chunk = 1) {
  const out = [];
  const b = Buffer.from(bytes, 'latin1');
  for (let i = 0; i < b.length; i += chunk) {
    for (let w = c.receive(b.subarray(i, i + chunk)); w !== undefined; w = c.poll()) {
      out.push(w === true ? 'ready' : w.result);
    }
  }
  return out;
}

function ready(protocol = 'auto', reply = 'VERSION 1.6.18\r\nMN\r\n') {
  const c = codec(protocol);
  c.transmit();
  assert.deepEqual(feedAll(c, reply), ['ready']);
  return c;
}

test('probe: version + mn first; MN means meta, ERROR means text', () => {
  const c = codec();
  assert.equal(txt(c.transmit()), 'version\r\nmn\r\n');
  assert.equal(c.transmit(), undefined);
  assert.equal(c.dialect, undefined);
  assert.deepEqual(feedAll(c, 'VERSION 1.6.18\r\nMN\r\n'), ['ready']);
  assert.equal(c.dialect, 'meta');
  assert.equal(c.serverVersion, '1.6.18');
  const old = codec();
  assert.deepEqual(feedAll(old, 'VERSION 1.4.5\r\nERROR\r\n', 3), ['ready']);
  assert.equal(old.dialect, 'text');
  const forced = codec('meta');
  assert.throws(() => feedAll(forced, 'VERSION 1.4.5\r\nERROR\r\n'), (e) => e.kind === 'Unsupported');
  const text = codec('text');
  assert.equal(txt(text.transmit()), 'version\r\n');
});

test('requests made before the probe answered wait, then leave in order', () => {
  const c = codec();
  c.transmit();
  req(c, get('a'));
  req(c, store('add', 'b', 'hi'));
  assert.equal(c.transmit(), undefined); // nothing is sent before the dialect is known
  assert.equal(c.pending, 3);
  assert.deepEqual(feedAll(c, 'VERSION 1.6.18\r\nMN\r\n'), ['ready']);
  assert.equal(c.ready().length, 0);
  assert.equal(txt(c.transmit()), 'mg a v f k\r\nms b 2 ME\r\nhi\r\n');
  assert.deepEqual(feedAll(c, 'EN\r\nHD\r\n'), [null, true]);
  assert.equal(c.pending, 0);
});

test('meta requests and replies, byte by byte, in order', () => {
  const c = ready();
  req(c, get('a'));
  req(c, set('b', 'hi', 60));
  req(c, store('add', 'n', 42));
  req(c, (cr, j) => cr.delete(j, k('a')));
  req(c, (cr, j) => cr.arith(j, k('n'), true, 5, undefined, 0, 0));
  assert.equal(
    txt(c.transmit()),
    'mg a v f k\r\nms b 2 T60\r\nhi\r\nms n 2 F2 ME\r\n42\r\nmd a\r\nma n D5 v\r\n',
  );
  assert.equal(c.pending, 5);
  const rs = feedAll(c, 'VA 2 f0 ka\r\nhi\r\nHD\r\nNS\r\nNF\r\nVA 2\r\n47\r\n');
  assert.equal(rs.length, 5);
  assert.equal(Buffer.from(rs[0]).toString(), 'hi');
  assert.deepEqual(rs[1], [['127.0.0.1:1'], []]); // a plain set's report: its server
  assert.ok(rs[2] instanceof Error && rs[2].kind === 'NotStored');
  assert.equal(rs[3], false);
  assert.equal(rs[4], 47);
  assert.equal(c.pending, 0);
});

test('typed reads: envelope-aware, tombstones are misses, flags by convention', () => {
  const c = ready();
  const env = core.envelopeEncode(5n, 9n, 0, 1, 0, Buffer.from('Ada'));
  const tomb = core.envelopeTombstone(6n, 9n);
  for (let i = 0; i < 5; i++) req(c, get(`k${i}`));
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
  const c = ready('text', 'VERSION 1.4.5\r\n');
  req(c, (cr, j) => cr.getMulti(j, Buffer.from('abc'), new Uint32Array([1, 2, 3])));
  assert.equal(txt(c.transmit()), 'get a b c\r\n');
  const [r] = feedAll(c, 'VALUE a 0 1\r\nx\r\nVALUE c 0 2\r\nyz\r\nEND\r\n', 4);
  const [codes, blob, ranges] = r; // packed: 1 = bytes in blob[ranges[2j]..ranges[2j+1]]
  assert.deepEqual(Array.from(codes), [1, 0, 1]);
  assert.equal(Buffer.from(blob.subarray(ranges[0], ranges[1])).toString(), 'x');
  assert.equal(Buffer.from(blob.subarray(ranges[4], ranges[5])).toString(), 'yz');
});

test('invalid keys and oversized values are refused before anything is queued', () => {
  for (const c of [codec(), ready()]) {
    assert.throws(() => req(c, get('bad key')), (e) => e.kind === 'InvalidKey');
    assert.throws(() => req(c, get('')), (e) => e.kind === 'InvalidKey');
    assert.throws(() => req(c, get('x'.repeat(251))), (e) => e.kind === 'InvalidKey');
    assert.throws(() => req(c, (cr, j) => cr.setBytes(j, k('a'), new Uint8Array(1024 * 1024 + 1), 0)), (e) => e.kind === 'ValueTooLarge');
    assert.throws(() => req(c, set('a', null)), (e) => e.kind === 'Config');
  }
  const c = ready();
  assert.equal(c.pending, 0);
  assert.equal(c.transmit(), undefined);
});

test('a reply for another key is that request error, and the connection fails', () => {
  const c = ready();
  req(c, get('a'));
  req(c, get('b'));
  const r = c.receive(Buffer.from('VA 2 f0 kother\r\nhi\r\n')).result;
  assert.ok(r instanceof Error && r.kind === 'Protocol', String(r));
  // Never a value: the next reply is not trusted either.
  assert.throws(() => c.receive(Buffer.from('VA 2 f0 kb\r\nhi\r\n')), (e) => e.kind === 'Protocol');
  assert.equal(c.drain(r).length, 1);
  const t = ready('text', 'VERSION 1.4.5\r\n');
  req(t, get('a'));
  const tr = t.receive(Buffer.from('VALUE other 0 2\r\nhi\r\nEND\r\n')).result;
  assert.ok(tr instanceof Error && tr.kind === 'Protocol');
  assert.throws(() => t.poll(), (e) => e.kind === 'Protocol');
});

test('garbage and unsolicited bytes are protocol errors', () => {
  const c = ready();
  assert.throws(() => c.receive(Buffer.from('HD\r\n')), (e) => e.kind === 'Protocol' && /nobody asked/.test(e.message));
  const d = ready();
  const x = req(d, get('a'));
  assert.throws(() => d.receive(Buffer.from('VA 99999999999 f0\r\n')), (e) => e.kind === 'Protocol');
  const err = core.ioError('closed', '127.0.0.1:1', 'test', 0, '');
  assert.deepEqual(d.drain(err), [x]);
});

test('deadlines: the probe within the connect timeout, each request within the timeout', () => {
  const c = codec('auto', 'pylibmc', 100, 500);
  assert.equal(c.check(T0), 500);
  assert.throws(() => c.check(T0 + 500), (e) => e.kind === 'Timeout' && e.phase === 'connect');
  const r = ready();
  assert.equal(r.check(T0 + 10), -1);
  req(r, get('a'), {}, T0 + 10);
  req(r, get('b'), {}, T0 + 50);
  assert.equal(r.check(T0 + 20), 90);
  assert.deepEqual(feedAll(r, 'EN\r\n'), [null]);
  assert.equal(r.check(T0 + 120), 30); // the next request's deadline counts now
  assert.throws(() => r.check(T0 + 150), (e) => e.kind === 'Timeout' && e.phase === 'read');
});

test('server errors are results, with the server named', () => {
  const c = ready();
  req(c, set('a', Buffer.from('x')));
  const [r] = feedAll(c, 'SERVER_ERROR out of memory storing object\r\n');
  assert.ok(r instanceof Error);
  assert.equal(r.kind, 'Server');
  assert.equal(r.server, '127.0.0.1:1');
  assert.match(r.message, /out of memory/);
  // The server's "too large" is the same typed error as the client's own size check.
  req(c, set('b', Buffer.from('xyz')));
  const [big] = feedAll(c, 'SERVER_ERROR object too large for cache\r\n');
  assert.equal(big.kind, 'ValueTooLarge');
  assert.match(big.message, /refused by the server/);
});
