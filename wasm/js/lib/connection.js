'use strict';
// One persistent, pipelined connection to one memcached server. It moves bytes and time only:
// requests are encoded by the WASM codec, written in order, and the bytes read are fed back to
// the codec, which hands out results in request order (memcached answers in order). What a
// reply means is decided by the core; this file never looks inside one.

const net = require('node:net');
const { performance } = require('node:perf_hooks');
const wasm = require('./wasm');
const { toError } = require('./errors');

/** A FIFO with O(1) shift. */
class Fifo {
  constructor() {
    this.items = [];
    this.head = 0;
  }

  get length() {
    return this.items.length - this.head;
  }

  push(x) {
    this.items.push(x);
  }

  peek() {
    return this.items[this.head];
  }

  shift() {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }

  drain() {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}

/** Request `w` failed with `err`: rejected, or settled with what `w.fail(err)` returns or
 *  throws. */
function failed(w, err) {
  if (w.fail === null) {
    w.reject(err);
    return;
  }
  let v;
  try {
    v = w.fail(err);
  } catch (e) {
    w.reject(e);
    return;
  }
  w.resolve(v);
}

function uncork(conn) {
  conn.corked = false;
  if (conn.sock) conn.sock.uncork();
}

/**
 * States: no socket → connecting (probe written, requests wait unencoded, since the dialect
 * is not known yet) → ready (requests are encoded and written at once) → failed (every
 * waiting and in-flight request is rejected; the next request opens a new socket).
 */
class Connection {
  constructor(opts) {
    this.address = opts.address;
    this.host = opts.host;
    this.port = opts.port;
    this.timeout = opts.timeout;
    this.connectTimeout = opts.connectTimeout;
    this.codecArgs = [opts.address, opts.keyPrefix, opts.maxValueSize, opts.protocol, opts.convention, !!opts.binaryKeys];
    // Called once per request that fails with the connection (the client records health).
    this.onFailure = opts.onFailure || (() => {});
    this.sock = null;
    this.codec = null;
    this.ready = false;
    this.version = undefined;
    this.waiting = [];
    this.inflight = new Fifo();
    this.corked = false;
    this.timer = null;
    this.timerAt = 0;
    this.connectTimer = null;
    this.referenced = false;
    this.closed = false;
  }

  /** Send a request: `encode(codec)` returns its bytes. Resolves with the codec's result
   *  passed through `conv` when given (which may throw, rejecting the call; without `conv`
   *  the result may be an Error the server answered with); rejects on I/O failure, or, with
   *  `fail`, settles with what `fail(error)` returns or throws. */
  request(encode, conv = null, fail = null) {
    return new Promise((resolve, reject) => {
      const w = { encode, conv, fail, resolve, reject, deadline: 0 };
      if (this.closed) {
        failed(w, toError(wasm.ioError('closed', this.address, 'the client was closed', 0, 'write')));
        return;
      }
      if (this.ready) {
        this.send(w);
        return;
      }
      if (this.sock === null) this.connect();
      this.waiting.push(w);
    });
  }

  send(w) {
    let bytes;
    try {
      bytes = w.encode(this.codec);
    } catch (e) {
      failed(w, toError(e));
      return;
    }
    w.deadline = performance.now() + this.timeout;
    this.inflight.push(w);
    this.write(bytes);
    if (this.timer === null || this.timerAt > w.deadline) this.armTimer(this.timeout);
    if (!this.referenced) {
      this.referenced = true;
      this.sock.ref();
    }
  }

  write(bytes) {
    const sock = this.sock;
    if (!this.corked) {
      // Requests made in the same tick leave in one write (pipelining without a syscall each).
      this.corked = true;
      sock.cork();
      process.nextTick(uncork, this);
    }
    sock.write(bytes);
  }

  connect() {
    const sock = net.connect({ host: this.host, port: this.port });
    sock.setNoDelay(true);
    this.sock = sock;
    this.referenced = true;
    this.codec = new wasm.Codec(...this.codecArgs);
    const started = performance.now();
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      this.fail(toError(wasm.ioError('timeout', this.address, '', performance.now() - started, 'connect')));
    }, this.connectTimeout);
    this.connectTimer.unref();
    sock.on('connect', () => {
      if (this.connectTimer !== null) {
        clearTimeout(this.connectTimer);
        this.connectTimer = null;
      }
    });
    sock.on('data', (chunk) => {
      if (this.sock === sock) this.onData(chunk);
    });
    sock.on('error', (err) => {
      if (this.sock !== sock) return;
      const refused = err && (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH');
      const e = wasm.ioError(refused ? 'refused' : 'closed', this.address, err ? err.message : 'socket error', 0, '');
      this.fail(toError(e));
    });
    sock.on('close', () => {
      if (this.sock === sock) {
        this.fail(toError(wasm.ioError('closed', this.address, 'the server closed the connection', 0, '')));
      }
    });
    // The probe goes first: `version` + `mn` tells liveness, version and dialect at once.
    const probe = this.codec.probe();
    this.inflight.push({
      encode: null, // the probe's mark
      conv: null,
      fail: null,
      resolve: (r) => this.onProbe(r),
      reject: () => {},
      deadline: performance.now() + this.connectTimeout + this.timeout,
    });
    this.write(probe);
    this.armTimer(this.connectTimeout + this.timeout);
  }

  onProbe(r) {
    if (r instanceof Error) {
      this.fail(toError(r));
      return;
    }
    this.version = r.version;
    this.ready = true;
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) this.send(w);
  }

  onData(chunk) {
    const codec = this.codec;
    if (codec === null) return;
    let r;
    try {
      r = codec.receive(chunk);
    } catch (e) {
      this.fail(toError(e));
      return;
    }
    while (r !== undefined) {
      const w = this.inflight.shift();
      if (w.conv === null) {
        w.resolve(r);
      } else {
        let v;
        let ok = true;
        try {
          v = w.conv(r);
        } catch (e) {
          ok = false;
          w.reject(e);
        }
        if (ok) w.resolve(v);
      }
      if (this.codec !== codec) return; // failed or closed meanwhile
      try {
        r = codec.poll();
      } catch (e) {
        this.fail(toError(e));
        return;
      }
    }
    if (this.inflight.length === 0 && this.waiting.length === 0 && this.referenced) {
      // Idle: an idle client does not keep the process alive.
      this.referenced = false;
      this.sock.unref();
    }
  }

  armTimer(ms) {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = performance.now() + ms;
    this.timer = setTimeout(() => this.onTimer(), Math.max(1, ms));
    this.timer.unref();
  }

  onTimer() {
    this.timer = null;
    const head = this.inflight.peek();
    if (head === undefined) return;
    const now = performance.now();
    if (head.deadline <= now) {
      // Replies after a lost one cannot be trusted to be in sync: fail the connection.
      this.fail(toError(wasm.ioError('timeout', this.address, '', this.timeout, 'read')));
    } else {
      this.armTimer(head.deadline - now);
    }
  }

  /** Drop the socket and reject everything queued on it with `err`. */
  fail(err) {
    const sock = this.sock;
    this.sock = null;
    this.ready = false;
    this.corked = false;
    if (this.codec !== null) {
      this.codec.free();
      this.codec = null;
    }
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
    if (sock !== null) sock.destroy();
    const pending = this.inflight.drain();
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of pending) {
      if (w.encode !== null) this.onFailure(err); // the probe is not a caller's request
      failed(w, err);
    }
    for (const w of waiting) {
      this.onFailure(err);
      failed(w, err);
    }
  }

  close() {
    this.closed = true;
    if (this.sock !== null || this.inflight.length > 0 || this.waiting.length > 0) {
      this.fail(toError(wasm.ioError('closed', this.address, 'the client was closed', 0, '')));
    }
  }
}

module.exports = { Connection, Fifo };
