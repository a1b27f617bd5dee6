'use strict';
// Replicated mode against real memcached: copies on the first N ring servers, later wins,
// read repair, tombstones, a killed and a stopped replica.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, core, ReplicationError } = require('..');
const { startServers, stopServers, rawGet, raw, sleep, Memcached } = require('../support/harness');

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
const ringOf = (list) => new core.Ring(list);

/** Store raw bytes on one server, as a plain client or another writer would. */
async function rawSet(port, key, data, flags = 0) {
  const head = Buffer.from(`set ${key} ${flags} 0 ${data.length}\r\n`);
  const r = await raw(port, Buffer.concat([head, Buffer.from(data), Buffer.from('\r\n')]), /\r\n$/);
  assert.equal(r.toString(), 'STORED\r\n');
}

test('writes land on exactly the first N ring servers, enveloped, with flags 0', async () => {
  const c = new Client(addrs, { replicas: 2 });
  assert.equal(c.mode, 'replicated');
  const ring = ringOf(addrs);
  for (let i = 0; i < 30; i++) {
    const key = `w:${i}`;
    const report = await c.set(key, `value ${i}`);
    const want = Array.from(ring.preferenceList(Buffer.from(key), 2), (s) => ring.address(s));
    assert.deepEqual(report.stored, want);
    assert.deepEqual(report.failed, []);
    for (const s of servers) {
      const got = await rawGet(s.port, key);
      if (!want.includes(s.address)) {
        assert.equal(got, null, `${key} found on ${s.address}, not one of its replicas`);
        continue;
      }
      assert.equal(got.flags, 0);
      const env = core.envelopeDecode(got.data);
      assert.ok(env !== null, 'stored without the envelope');
      assert.equal(env.type, 1);
      assert.equal(env.writer, c.writerId);
      assert.equal(Buffer.from(env.payload).toString(), `value ${i}`);
    }
    assert.equal(await c.get(key), `value ${i}`);
  }
  c.close();
});

test('typed values round-trip through the envelope', async () => {
  const c = new Client(addrs, { replicas: 3 });
  const values = ['', 'héllo ✓ 🦀', Buffer.from([0, 1, 255]), 0, -42, 2 ** 53 - 1, 2n ** 63n - 1n, -(2n ** 63n), 0.1, -0, NaN, Infinity, true, false, { a: [1, { b: null }] }, [1, 2, 3]];
  for (const v of values) {
    await c.set('ty:k', v);
    const got = await c.get('ty:k');
    if (typeof v === 'object' && !Buffer.isBuffer(v)) assert.deepEqual(got, v);
    else if (Buffer.isBuffer(v)) assert.deepEqual(got, v);
    else if (typeof v === 'bigint') assert.equal(BigInt(got), v);
    else assert.ok(Object.is(got, v), `${String(v)} came back as ${String(got)}`);
  }
  await assert.rejects(c.set('ty:k', 2n ** 64n), (e) => e.kind === 'Config');
  const { InvalidKeyError, NotStoredError } = require('..');
  await assert.rejects(c.get('bad key'), InvalidKeyError);
  await assert.rejects(c.set('bad key', 1), InvalidKeyError);
  await assert.rejects(c.delete('bad key'), InvalidKeyError);
  await assert.rejects(c.getMulti(['ok', 'bad key']), (e) => e.failures.get('bad key') instanceof InvalidKeyError);
  // add/replace/touch of a replicated key: the core's rules, as in Python and PHP.
  await assert.rejects(c.add('ty:k', 1), NotStoredError);
  assert.equal(await c.touch('ty:k', 60), true);
  await c.replace('ty:k', 'r');
  assert.equal(await c.get('ty:k'), 'r');
  await c.append('ty:k', 's');
  assert.equal(await c.get('ty:k'), 'rs');
  assert.equal(await c.touch('ty:missing', 60), false);
  await c.add('ty:new', 7);
  assert.equal(await c.incr('ty:new', 3), 10);
  assert.throws(() => c.replicasOf('bad key'), InvalidKeyError);
  c.close();
});

test('later wins on 100/100 keys whichever replica holds the newer copy; replicas converge', async () => {
  const c = new Client(addrs, { replicas: 3 });
  const other = 0x5eedcafef00d0001n;
  const later = (BigInt(Date.now()) + 10000n) << 16n;
  const keys = Array.from({ length: 100 }, (_, i) => `lw:${i}`);
  await c.setMulti(keys.map((k) => [k, 'old']));
  const newer = new Map();
  for (const [i, key] of keys.entries()) {
    // Another writer's later version reached only one replica (a different one per key).
    const env = core.envelopeOfValue(`new ${i}`, later + BigInt(i), other);
    await rawSet(servers[i % 3].port, key, env);
    newer.set(key, env);
  }
  const fresh = new Client(addrs, { replicas: 3 });
  const got = await fresh.getMulti(keys);
  let wrong = 0;
  for (const [i, key] of keys.entries()) if (got.get(key) !== `new ${i}`) wrong++;
  assert.equal(wrong, 0, `${wrong} wrong winners`);
  // Read repair wrote the winner back (cas on the unique it read) to the stale replicas.
  for (const key of keys) {
    for (const s of servers) assert.deepEqual((await rawGet(s.port, key)).data, Buffer.from(newer.get(key)));
  }
  // The clock saw the winner's stamp: this client's next write wins over it.
  await fresh.set('lw:0', 'newest');
  assert.equal(await c.get('lw:0'), 'newest');
  c.close();
  fresh.close();
});

test('a plain value is read, and loses to an enveloped copy', async () => {
  const c = new Client(addrs, { replicas: 2 });
  const [a, b] = c.replicasOf('pl:k').map(byAddr);
  await rawSet(a.port, 'pl:k', Buffer.from('legacy'));
  assert.deepEqual(await new Client(addrs, { replicas: 2, readRepair: false }).get('pl:k'), Buffer.from('legacy'));
  await rawSet(b.port, 'pl:k', core.envelopeOfValue('enveloped', 1n, 7n));
  assert.equal(await c.get('pl:k'), 'enveloped');
  assert.deepEqual((await rawGet(a.port, 'pl:k')).data, (await rawGet(b.port, 'pl:k')).data);
  c.close();
});

test('a stopped replica: the All write fails naming it, the next one skips it; the stale copy loses and is repaired', async () => {
  const c = new Client(addrs, { replicas: 2, timeout: 200, retryInterval: 400 });
  const key = 'st:k';
  await c.set(key, 'v1');
  const [primary, second] = c.replicasOf(key).map(byAddr);
  await second.pause();
  try {
    await assert.rejects(c.set(key, 'v2'), (e) => {
      assert.ok(e instanceof ReplicationError);
      assert.equal(e.acked, 1);
      assert.equal(e.failures[0].server, second.address);
      assert.equal(e.failures[0].error.kind, 'Timeout');
      return true;
    });
    // Now marked down: the write succeeds and names the down replica.
    const report = await c.set(key, 'v3');
    assert.deepEqual(report.stored, [primary.address]);
    assert.equal(report.failed[0].error.kind, 'ServerDown');
    assert.equal(await c.get(key), 'v3');
  } finally {
    second.resume();
  }
  await sleep(450);
  // It holds v1, or v2 if it read the request that timed out after SIGCONT: stale either way.
  assert.equal(core.envelopeDecode((await rawGet(second.port, key)).data).payload.length, 2);
  assert.equal(await c.get(key), 'v3');
  assert.deepEqual((await rawGet(second.port, key)).data, (await rawGet(primary.port, key)).data);
  c.close();
});

test('a killed replica: writes go on, keys do not move, the restarted empty server is refilled by reads', async () => {
  const extra = await startServers(3);
  const list = extra.map((s) => s.address);
  const c = new Client(list, { replicas: 2, retryInterval: 200 });
  const keys = Array.from({ length: 40 }, (_, i) => `kill:${i}`);
  const victim = extra[1];
  const placement = new Map(keys.map((k) => [k, c.replicasOf(k)]));
  await victim.kill();
  for (const k of keys) {
    try {
      await c.set(k, `v:${k}`);
    } catch (e) {
      // The first write to notice the dead replica fails (All: a live replica failed); it is
      // still stored on the other replica.
      assert.ok(e instanceof ReplicationError && e.acked === 1);
    }
  }
  for (const k of keys) {
    assert.deepEqual(c.replicasOf(k), placement.get(k), 'keys never move');
    assert.equal(await c.get(k), `v:${k}`);
  }
  const again = new Memcached(victim.port);
  await again.start();
  await sleep(250);
  for (const k of keys) assert.equal(await c.get(k), `v:${k}`);
  let refilled = 0;
  for (const k of keys) {
    if (!placement.get(k).includes(victim.address)) continue;
    const got = await rawGet(victim.port, k);
    assert.ok(got !== null, `${k} was not repaired onto the restarted server`);
    refilled++;
  }
  assert.ok(refilled > 5);
  c.close();
  await again.kill();
  await stopServers(extra);
});

test('a delete writes tombstones that beat a replica that missed it', async () => {
  const c = new Client(addrs, { replicas: 2 });
  const key = 'del:k';
  await c.set(key, 'alive');
  const [, second] = c.replicasOf(key).map(byAddr);
  const old = (await rawGet(second.port, key)).data;
  assert.equal(await c.delete(key), true);
  assert.equal(core.envelopeDecode((await rawGet(second.port, key)).data).kind, 1);
  // The second replica missed the delete: it still holds the old value.
  await rawSet(second.port, key, old);
  assert.equal(await c.get(key), null);
  assert.equal(core.envelopeDecode((await rawGet(second.port, key)).data).kind, 1); // repaired
  await c.set(key, 'again');
  assert.equal(await c.get(key), 'again');
  assert.deepEqual([...(await c.deleteMulti([key, 'del:other']))], [[key, true], ['del:other', true]]);
  assert.equal(await c.get(key), null);
  c.close();
});

test('policies: quorum and one writes, first-hit and quorum reads', async () => {
  const [s] = await startServers(1);
  const list = [...addrs, s.address];
  const one = new Client(list, { replicas: 2, writePolicy: 'one', retryInterval: 60000 });
  const key = Array.from({ length: 200 }, (_, i) => `pol:${i}`).find((k) => one.replicasOf(k).includes(s.address));
  await s.kill();
  const report = await one.set(key, 'x');
  assert.equal(report.stored.length, 1);
  assert.equal(report.failed.length, 1);
  const q = new Client(list, { replicas: 2, writePolicy: { quorum: 2 }, readPolicy: 'quorum:2' });
  await assert.rejects(q.set(key, 'y'), (e) => e instanceof ReplicationError && e.required === 2);
  await assert.rejects(q.get(key), (e) => e instanceof ReplicationError && e.required === 2);
  const first = new Client(list, { replicas: 2, readPolicy: 'first' });
  assert.equal(await first.get(key), 'y');
  assert.throws(() => new Client(addrs, { replicas: 4 }), (e) => e.kind === 'Config');
  one.close();
  q.close();
  first.close();
});

test('replicated casUpdate and incr: 4 clients x 15 increments end at 60 on every replica', async () => {
  const clients = Array.from({ length: 4 }, () => new Client(addrs, { replicas: 3 }));
  await clients[0].delete('rc:n');
  await clients[0].set('rc:n', 0);
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < 15; i++) await c.incr('rc:n', 1);
    }),
  );
  assert.equal(await clients[0].get('rc:n'), 60);
  const copies = await Promise.all(servers.map((s) => rawGet(s.port, 'rc:n')));
  for (const c of copies) assert.equal(Buffer.from(core.envelopeDecode(c.data).payload).toString(), '60');
  const r = await clients[1].casUpdate('rc:n', (cur) => cur * 2);
  assert.equal(r.outcome, 'stored');
  assert.equal(r.report.stored.length, 3);
  assert.equal(await clients[2].get('rc:n'), 120);
  clients.forEach((c) => c.close());
});

test('policies overridden per call: a withPolicy view shares connections, clock and health', async () => {
  const own = await startServers(3);
  const a = own.map((s) => s.address);
  const c = new Client(a, { replicas: 3, timeout: 300 });
  try {
    const key = 'pv:k';
    await c.set(key, 'v1');
    const reps = c.replicasOf(key);
    // The primary holds an older copy: a first-hit view stops there, the default reads the latest.
    await rawSet(Number(reps[0].split(':')[1]), key, core.envelopeOfValue('old', 1n, 7n));
    const first = c.withPolicy({ readPolicy: 'first' });
    assert.deepEqual(first.policy, { readPolicy: 'first', writePolicy: 'all' });
    assert.deepEqual(c.policy, { readPolicy: 'all', writePolicy: 'all' });
    assert.equal(await first.get(key), 'old');
    assert.equal(await c.get(key), 'v1');
    // Writes: with one replica killed, All fails, a quorum:2 view of the same client succeeds.
    own.find((s) => s.address === reps[2]).kill();
    await assert.rejects(c.set(key, 'v2'), (e) => e instanceof ReplicationError);
    const q = c.withPolicy({ writePolicy: 'quorum:2' });
    const report = await q.set(key, 'v3');
    assert.equal(report.stored.length, 2);
    assert.equal(q.writerId, c.writerId);
    assert.equal(await c.get(key), 'v3');
    assert.throws(() => c.withPolicy({ readPolicy: 'quorum:4' }), (e) => e.kind === 'Config');
    assert.throws(() => q.close(), /close the client/);
    const plain = new Client(a.slice(0, 2));
    assert.throws(() => plain.withPolicy({ readPolicy: 'first' }), (e) => e.kind === 'Unsupported');
    plain.close();
  } finally {
    c.close();
    await stopServers(own);
  }
});
