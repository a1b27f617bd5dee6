'use strict';
// docs/vectors/envelope.json: the envelope contract every binding runs. A missing file or an
// empty section is a failure, never a skip.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { core } = require('..');
const { ENVELOPE_VECTORS } = require('../support/harness');

const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (h) => Buffer.from(h, 'hex');

const vectors = JSON.parse(fs.readFileSync(ENVELOPE_VECTORS, 'utf8'));

test('the envelope vectors have every section', () => {
  assert.equal(vectors.version, 1);
  for (const s of ['encode', 'decode', 'winner']) {
    assert.ok(Array.isArray(vectors[s]) && vectors[s].length > 0, `section ${s} is missing or empty`);
  }
});

function jsValue(v) {
  if ('text' in v) return v.text;
  if ('int' in v) return BigInt(v.int);
  if ('float' in v) return v.float;
  if ('bool' in v) return v.bool;
  throw new Error(`unknown value ${JSON.stringify(v)}`);
}

test('encode: fields → encoded_hex, and back', () => {
  for (const c of vectors.encode) {
    const ts = BigInt(c.stamp.ts);
    const writer = BigInt(c.stamp.writer);
    const enc = core.envelopeEncode(ts, writer, c.kind, c.type, c.format, bytes(c.payload_hex));
    assert.equal(hex(enc), c.encoded_hex, c.name);
    if (c.kind === 1) assert.equal(hex(core.envelopeTombstone(ts, writer)), c.encoded_hex, c.name);
    const d = core.envelopeDecode(bytes(c.encoded_hex));
    assert.ok(d !== null, `${c.name}: decoded as plain`);
    assert.equal(d.ts, ts, c.name);
    assert.equal(d.writer, writer, c.name);
    assert.equal(d.kind, c.kind, c.name);
    assert.equal(d.type, c.type, c.name);
    assert.equal(d.format, c.format, c.name);
    assert.equal(hex(d.payload), c.payload_hex, c.name);
  }
});

test('encode: typed values ↔ payloads, as JavaScript values', () => {
  let checked = 0;
  for (const c of vectors.encode) {
    if (!c.value) continue;
    checked++;
    const want = jsValue(c.value);
    const t = core.typedFromValue(want);
    assert.equal(t.type, c.type, c.name);
    assert.equal(t.format, c.format, c.name);
    assert.equal(hex(t.payload), c.payload_hex, c.name);
    const back = core.valueFromTyped(c.type, c.format, bytes(c.payload_hex));
    if (typeof want === 'bigint') assert.equal(BigInt(back), want, c.name);
    else assert.ok(Object.is(back, want), `${c.name}: ${back} !== ${want}`);
    // The whole envelope of the value, as a replicated write makes it.
    const env = core.envelopeOfValue(want, BigInt(c.stamp.ts), BigInt(c.stamp.writer));
    assert.equal(hex(env), c.encoded_hex, c.name);
  }
  assert.ok(checked >= 10, 'too few typed cases');
});

test('serialized values: JSON parses, pickle and PHP are UndecodableErrors with their bytes', () => {
  for (const c of vectors.encode.filter((e) => e.type === 5)) {
    if (c.format === 3) {
      assert.deepEqual(core.valueFromTyped(5, 3, bytes(c.payload_hex)), JSON.parse(bytes(c.payload_hex).toString()));
    } else {
      assert.throws(
        () => core.valueFromTyped(5, c.format, bytes(c.payload_hex)),
        (e) => e.kind === 'Undecodable' && e.format === c.format && hex(e.data) === c.payload_hex,
        c.name,
      );
    }
  }
});

test('decode: raw_hex → expect', () => {
  for (const c of vectors.decode) {
    const d = core.envelopeDecode(bytes(c.raw_hex));
    if (c.expect === 'plain') {
      assert.equal(d, null, `${c.name}: expected plain`);
      assert.equal(typeof core.envelopeWhyPlain(bytes(c.raw_hex)), 'string', c.name);
      continue;
    }
    assert.ok(d !== null, `${c.name}: decoded as plain`);
    assert.equal(d.ts, BigInt(c.expect.stamp.ts), c.name);
    assert.equal(d.writer, BigInt(c.expect.stamp.writer), c.name);
    assert.equal(d.kind, c.expect.kind, c.name);
    assert.equal(d.type, c.expect.type, c.name);
    assert.equal(d.format, c.expect.format, c.name);
    assert.equal(hex(d.payload), c.expect.payload_hex, c.name);
  }
});

test('winner: replicas_hex → winner, and compare agrees', () => {
  for (const c of vectors.winner) {
    const copies = c.replicas_hex.map((h) => (h === null ? null : bytes(h)));
    const w = core.envelopeWinner(copies);
    assert.equal(w === undefined ? null : w, c.winner, c.name);
    if (w !== undefined) {
      copies.forEach((x, i) => {
        const cmp = core.envelopeCompare(copies[w], x);
        assert.ok(cmp >= 0, `${c.name}: copy ${i} beats the winner`);
        if (i < w) assert.ok(cmp > 0, `${c.name}: an identical earlier copy should have won`);
      });
    }
  }
});

test('the clock: later than everything stamped or observed; counter restarts with the wall', () => {
  const hlc = new core.Hlc();
  const t1 = hlc.stamp(1700000000000);
  assert.equal(t1, 1700000000000n << 16n);
  const t2 = hlc.stamp(1700000000000);
  assert.equal(t2, t1 + 1n);
  const t3 = hlc.stamp(1699999999000); // the wall clock stepped back
  assert.equal(t3, t2 + 1n);
  hlc.observe((1700000005000n << 16n) + 7n);
  assert.equal(hlc.stamp(1700000000001), (1700000005000n << 16n) + 8n);
  assert.deepEqual(Array.from(core.stampParts((1700000005000n << 16n) + 8n)), [1700000005000, 8]);
  assert.equal(hlc.stamp(1700000009000), 1700000009000n << 16n);
});
