'use strict';
// The Node client against real memcached processes (plain mode).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, DELETE, MultiputError, AuthError, TlsError, NotStoredError, ExistsError, TimeoutError, ServerDownError, ConnectionRefusedError, InvalidKeyError, LockNotAcquiredError } = require('..');
const { startServers, stopServers, rawGet, sleep, Memcached } = require('../support/harness');

let servers;
let addrs;
test.before(async () => {
  servers = await startServers(3);
  addrs = servers.map((s) => s.address);
});
test.after(async () => {
  await stopServers(servers);
});

const byAddr = (a) => servers.find((s) => s.address === a);

test('get, set, miss, and values of every type', async () => {
  const c = new Client(addrs);
  assert.equal(c.mode, 'plain');
  assert.deepEqual(new Client(addrs.join(',')).servers, addrs);
  assert.deepEqual(new Client({ servers: addrs, replicas: 2 }).mode, 'replicated');
  assert.equal(await c.get('t:missing'), null);
  const report = await c.set('t:s', 'héllo');
  assert.deepEqual(report.stored, c.replicasOf('t:s'));
  assert.equal(await c.get('t:s'), 'héllo'); // multiput's flags: text comes back as text
  await c.set('t:b', Buffer.from([0, 255, 13, 10]));
  assert.deepEqual(await c.get('t:b'), Buffer.from([0, 255, 13, 10]));
  for (const v of [0, 42, -7, 2 ** 53 - 1, 1.5, -0, 1e300, true, false, 2n ** 62n]) {
    await c.set('t:v', v);
    const got = await c.get('t:v');
    if (typeof v === 'bigint') assert.equal(got, v);
    else assert.ok(Object.is(got, v), `${v} came back as ${got}`);
  }
  await c.set('t:o', { a: 1 }); // JSON, which every binding reads
  assert.deepEqual(await c.get('t:o'), { a: 1 });
  const pylibmc = new Client(addrs, { convention: 'pylibmc' });
  await assert.rejects(pylibmc.set('t:o', { a: 1 }), (e) => e.kind === 'Config'); // no JSON flag in pylibmc's numbers
  await pylibmc.set('t:n', 42);
  assert.deepEqual(await rawGet(byAddr(c.replicasOf('t:n')[0]).port, 't:n'), { flags: 2, data: Buffer.from('42') });
  pylibmc.close();
  const php = new Client(addrs, { convention: 'php' });
  await php.set('t:o', { a: [1, 'x'] });
  assert.deepEqual(await php.get('t:o'), { a: [1, 'x'] });
  assert.deepEqual(await rawGet(byAddr(php.replicasOf('t:o')[0]).port, 't:o'), { flags: 6, data: Buffer.from('{"a":[1,"x"]}') });
  await c.set('t:n', 42);
  assert.deepEqual(await rawGet(byAddr(c.replicasOf('t:n')[0]).port, 't:n'), { flags: 0xa000, data: Buffer.from('42') });
  await assert.rejects(c.set('t:null', null), MultiputError);
  await assert.rejects(c.get('bad key'), InvalidKeyError);
  await assert.rejects(c.get(''), InvalidKeyError);
  await assert.rejects(c.set('t:big', Buffer.alloc(1024 * 1024 + 1)), (e) => e.kind === 'ValueTooLarge');
  c.close();
  php.close();
});

test('conditional stores, CAS, counters, touch, append', async () => {
  const c = new Client(addrs);
  await c.delete('c:a');
  assert.equal(await c.add('c:a', 'one'), true);
  await assert.rejects(c.add('c:a', 'two'), NotStoredError);
  assert.equal(await c.replace('c:a', 'three'), true);
  await assert.rejects(c.replace('c:none', 'x'), NotStoredError);
  const g = await c.gets('c:a');
  assert.equal(typeof g.cas, 'bigint');
  assert.equal(await c.cas('c:a', 'four', g.cas), true);
  await assert.rejects(c.cas('c:a', 'five', g.cas), ExistsError);
  assert.equal(await c.append('c:a', '!'), true);
  assert.equal(await c.prepend('c:a', '>'), true);
  assert.equal(await c.get('c:a'), '>four!'); // appended bytes keep the text flags
  assert.equal(await c.delete('c:a'), true);
  assert.equal(await c.delete('c:a'), false);
  assert.equal(await c.incr('c:n'), null);
  await c.set('c:n', 10);
  assert.equal(await c.incr('c:n', 5), 15);
  assert.equal(await c.decr('c:n', 20), 0);
  assert.equal(await c.incr('c:n', 2n ** 60n), 2n ** 60n);
  assert.equal(await c.touch('c:n', 100), true);
  assert.equal(await c.touch('c:none', 100), false);
  c.close();
});

test('multi-get across servers: one request per server, hits only, order kept', async () => {
  const c = new Client(addrs);
  const items = new Map();
  for (let i = 0; i < 300; i++) items.set(`m:${i}`, `v${i}`);
  await c.setMulti(items, { ttl: 60 });
  const keys = [...items.keys(), 'm:none1', 'm:none2'];
  const got = await c.getMulti(keys);
  assert.equal(got.size, 300);
  for (const [k, v] of items) assert.equal(got.get(k), v);
  const used = new Set(keys.slice(0, 300).map((k) => c.replicasOf(k)[0]));
  assert.equal(used.size, 3, 'keys should spread over every server');
  const del = await c.deleteMulti(['m:1', 'm:2', 'm:none1']);
  assert.deepEqual([...del], [['m:1', true], ['m:2', true], ['m:none1', false]]);
  await assert.rejects(c.getMulti(['m:3', 'bad key']), (e) => e.failures.has('bad key') && e.partial.has('m:3'));
  c.close();
});

test('binaryKeys: keys with spaces and control bytes go base64 over meta', async () => {
  const c = new Client(addrs, { binaryKeys: true });
  const odd = ['b:with space', 'b:tab\there', 'b:nul\u0000\r\n'];
  for (const [i, k] of odd.entries()) await c.set(k, `v${i}`);
  for (const [i, k] of odd.entries()) assert.equal(await c.get(k), `v${i}`);
  const got = await c.getMulti([...odd, 'b:plain', 'b:missing key']);
  assert.deepEqual([...got.keys()].sort(), [...odd].sort());
  assert.equal(await c.delete(odd[0]), true);
  assert.equal(await c.get(odd[0]), null);
  // The stored key is the raw bytes: the same item, whichever way it is named.
  await c.set(Buffer.from('b:x y'), 'raw');
  assert.equal(await c.get('b:x y'), 'raw');
  await assert.rejects(c.get(' '.repeat(187)), InvalidKeyError);
  await assert.rejects(new Client(addrs).get('b:with space'), InvalidKeyError);
  const text = new Client(addrs, { binaryKeys: true, protocol: 'text' });
  await assert.rejects(text.get('b:tab\there'), (e) => e.kind === 'Unsupported');
  text.close();
  c.close();
});

test('a key prefix is sent but not hashed', async () => {
  const c = new Client(addrs, { keyPrefix: 'app1:' });
  const plain = new Client(addrs);
  await c.set('p:k', 'v');
  const owner = c.replicasOf('p:k')[0];
  assert.equal(owner, plain.replicasOf('p:k')[0]);
  assert.deepEqual((await rawGet(byAddr(owner).port, 'app1:p:k')).data, Buffer.from('v'));
  assert.equal(await plain.get('p:k'), null);
  c.close();
  plain.close();
});

test('pipelining: 2000 concurrent calls each get their own answer', async () => {
  const c = new Client(addrs);
  await c.setMulti(Array.from({ length: 200 }, (_, i) => [`pp:${i}`, i]));
  const calls = [];
  for (let i = 0; i < 2000; i++) calls.push(c.get(`pp:${i % 200}`).then((v) => assert.equal(v, i % 200)));
  await Promise.all(calls);
  c.close();
});

test('CAS updates lose nothing: 4 clients x 25 increments', async () => {
  const clients = Array.from({ length: 4 }, () => new Client(addrs));
  await clients[0].delete('cas:ctr');
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < 25; i++) {
        await c.casUpdate('cas:ctr', (cur) => (cur === null ? 1 : cur + 1), { deadline: 10000, maxAttempts: 1000 });
      }
    }),
  );
  assert.equal(await clients[0].get('cas:ctr'), 100);
  const r = await clients[0].casUpdate('cas:ctr', () => undefined);
  assert.equal(r.outcome, 'unchanged');
  const d = await clients[0].casUpdate('cas:ctr', () => DELETE);
  assert.equal(d.outcome, 'deleted');
  assert.equal(await clients[0].get('cas:ctr'), null);
  clients.forEach((c) => c.close());
});

test('locks: one holder, released only by its owner, extendable, fenced', async () => {
  const a = new Client(addrs);
  const b = new Client(addrs);
  await a.delete('lk:L');
  const la = await a.lock('lk:L', { ttl: 10, fencing: true });
  assert.equal(la.held, true);
  await assert.rejects(b.lock('lk:L', { ttl: 10, wait: 30 }), LockNotAcquiredError);
  assert.equal(await la.extend(20), true);
  assert.equal(await la.release(), true);
  assert.equal(await la.release(), false);
  const lb = await b.lock('lk:L', { ttl: 10, fencing: true });
  assert.ok(lb.fence > la.fence, `fence ${lb.fence} after ${la.fence}`);
  // A late holder whose lock was taken over cannot release or extend the new one.
  la.held = true;
  assert.equal(await la.release(), false);
  assert.equal(await b.get('lk:L').then((v) => v.toString()), lb.token);
  assert.equal(await lb.release(), true);
  // A waiter gets the lock once the holder releases it.
  const lc = await a.lock('lk:L', { ttl: 10 });
  const waiting = b.lock('lk:L', { ttl: 10, wait: 2000 });
  await sleep(20);
  await lc.release();
  assert.equal((await waiting).held, true);
  a.close();
  b.close();
});

test('getOrSet: one load for many concurrent callers, across clients too', async () => {
  const a = new Client(addrs);
  const b = new Client(addrs);
  await a.delete('gos:k');
  let loads = 0;
  const loader = async () => {
    loads++;
    await sleep(50);
    return 'filled';
  };
  const rs = await Promise.all([
    ...Array.from({ length: 20 }, () => a.getOrSet('gos:k', loader, { ttl: 60 })),
    ...Array.from({ length: 20 }, () => b.getOrSet('gos:k', loader, { ttl: 60 })),
  ]);
  assert.equal(loads, 1);
  for (const r of rs) assert.equal(Buffer.from(r).toString(), 'filled');
  await assert.rejects(
    a.getOrSet('gos:fail', async () => {
      throw new Error('db down');
    }),
    (e) => e.kind === 'Loader' && /db down/.test(e.message),
  );
  a.close();
  b.close();
});

test('a stopped server times out once, then fails fast until its retry interval, then recovers', async () => {
  const [s] = await startServers(1);
  try {
    const c = new Client([s.address], { timeout: 200, retryInterval: 300 });
    await c.set('h:k', 'v');
    await s.pause();
    await assert.rejects(c.get('h:k'), TimeoutError);
    // Marked down: refused without I/O (the error kind says so; no clock in the test).
    await assert.rejects(c.get('h:k'), ServerDownError);
    s.resume();
    await sleep(350);
    assert.equal(await c.get('h:k'), 'v');
    c.close();
  } finally {
    s.resume();
    await s.kill();
  }
});

test('a server that accepts but never answers the probe: every waiting call times out as a connect', async () => {
  const [s] = await startServers(1);
  try {
    await s.pause(); // the kernel still accepts the connection; nothing answers the probe
    const c = new Client([s.address], { timeout: 2000, connectTimeout: 150 });
    const rs = await Promise.allSettled([c.get('p:a'), c.set('p:b', 'v'), c.getMulti(['p:a', 'p:c'])]);
    for (const r of rs) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof TimeoutError, String(r.reason));
      assert.equal(r.reason.phase, 'connect');
    }
    s.resume();
    c.close();
  } finally {
    s.resume();
    await s.kill();
  }
});

test('a refused server is marked down at once; a restarted one is reconnected', async () => {
  const [s] = await startServers(1);
  const c = new Client([s.address], { retryInterval: 200 });
  try {
    await c.set('r:k', 'v');
    await s.kill();
    await assert.rejects(c.get('r:k'), (e) => e instanceof ConnectionRefusedError || e.kind === 'ConnectionClosed');
    await assert.rejects(c.get('r:k'), (e) => e instanceof ConnectionRefusedError || e instanceof ServerDownError);
    await assert.rejects(c.get('r:k'), ServerDownError);
    const again = new Memcached(s.port);
    await again.start();
    await sleep(250);
    assert.equal(await c.get('r:k'), null); // a new, empty server: reconnected
    await c.set('r:k', 'back');
    assert.equal(await c.get('r:k'), 'back');
    await again.kill();
  } finally {
    c.close();
    await s.kill();
  }
});

test('a server restarted between calls costs no failed call', async () => {
  // The pooled socket to the old process is dead; the client notices before it uses it.
  const [s] = await startServers(1);
  const c = new Client([s.address]);
  let again;
  try {
    await Promise.all([0, 1, 2, 3].map((i) => c.set(`rs:${i}`, 'v')));
    await s.kill();
    again = new Memcached(s.port);
    await again.start();
    for (let i = 0; i < 4; i++) assert.equal(await c.get(`rs:${i}`), null);
    await c.set('rs:0', 'again');
    assert.equal(await c.get('rs:0'), 'again');
  } finally {
    c.close();
    if (again) await again.kill();
    await s.kill();
  }
});

test('stats, version, flush and close', async () => {
  const [s] = await startServers(1);
  const c = new Client([s.address]);
  const v = await c.version();
  assert.match(v.get(s.address), /^1\.\d+/);
  const st = await c.stats();
  assert.ok(Number(st.get(s.address).pid) > 0);
  await c.set('f:k', 1);
  await c.flushAll();
  assert.equal(await c.get('f:k'), null);
  const pending = c.get('f:k');
  c.close();
  await pending.catch(() => {});
  await assert.rejects(c.get('f:k'), (e) => e.kind === 'ConnectionClosed');
  await s.kill();
});

test('memcached -Y: the right credentials work, wrong ones are an AuthError without the password', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'multiput-auth-'));
  const file = path.join(dir, 'auth');
  fs.writeFileSync(file, 'app:s3cret\n');
  const [s] = await startServers(1, ['-Y', file]);
  try {
    const c = new Client([s.address], { username: 'app', password: 's3cret' });
    await c.set('auth:k', 'v');
    assert.equal(await c.get('auth:k'), 'v');
    c.close();
    const wrong = new Client([s.address], { username: 'app', password: 'nope' });
    await assert.rejects(wrong.get('auth:k'), (e) => e instanceof AuthError && !e.message.includes('nope'));
    wrong.close();
    assert.throws(() => new Client([s.address], { tlsCa: '/nonexistent/x.pem' }), (e) => e.kind === 'Config' && /tlsCa/.test(e.message));
  } finally {
    await s.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function makePki() {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const { execFileSync } = require('node:child_process');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'multiput-node-pki-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  for (const ca of ['ca', 'other-ca']) {
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-subj', `/CN=${ca}`,
      '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  }
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt',
    '-days', '2', '-extfile', 'server.ext');
  const f = (n) => path.join(dir, n);
  return { dir, ca: f('ca.crt'), otherCa: f('other-ca.crt'), args: ['-Z', '-o', `ssl_chain_cert=${f('server.crt')},ssl_key=${f('server.key')}`] };
}

test('TLS with node:tls: get/set/getMulti, replicated, and each failure as a TlsError with its problem', async () => {
  const fs = require('node:fs');
  const pki = makePki();
  const servers = await startServers(2, pki.args);
  const [plain] = await startServers(1);
  const addrs = servers.map((s) => s.address);
  try {
    const c = new Client(addrs, { tlsCa: pki.ca });
    await c.set('tls:k', 'over tls');
    assert.equal(await c.get('tls:k'), 'over tls');
    const keys = Array.from({ length: 50 }, (_, i) => `tls:${i}`);
    await c.setMulti(Object.fromEntries(keys.map((k) => [k, k])));
    const got = await c.getMulti(keys);
    assert.equal(got.size ?? Object.keys(got).length, 50);
    const big = Buffer.alloc(900 * 1024, 7);
    await c.set('tls:big', big);
    assert.equal(Buffer.from(await c.get('tls:big')).length, big.length);
    c.close();

    const r = new Client(addrs, { tlsCa: pki.ca, replicas: 2 });
    await r.set('tls:rep', { a: 1 });
    assert.deepEqual(await r.get('tls:rep'), { a: 1 });
    r.close();

    // A fleet where only one server speaks TLS.
    const mixed = new Client([addrs[0], plain.address], { tlsCa: pki.ca, tlsServers: [addrs[0]], replicas: 2 });
    const report = await mixed.set('tls:mixed', 'v');
    assert.equal(report.stored.length, 2);
    assert.equal(await mixed.get('tls:mixed'), 'v');
    mixed.close();

    const problem = async (options, address, want) => {
      const x = new Client([address], { ...options, retryInterval: 10 });
      await assert.rejects(x.get('k'), (e) => e instanceof TlsError && e.problem === want, want);
      x.close();
    };
    await problem({ tlsCa: pki.otherCa }, addrs[0], 'untrusted_certificate');
    await problem({ tlsCa: pki.ca, tlsServerName: 'memcached.example' }, addrs[0], 'hostname_mismatch');
    await problem({}, addrs[0], 'server_speaks_tls');
    await problem({ tlsCa: pki.ca }, plain.address, 'server_not_tls');
  } finally {
    for (const s of [...servers, plain]) await s.kill();
    fs.rmSync(pki.dir, { recursive: true, force: true });
  }
});
