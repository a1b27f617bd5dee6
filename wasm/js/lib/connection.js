'use strict';
// One persistent, pipelined connection to one memcached server. It moves bytes and time only:
// requests are encoded by the WASM codec, written in order, and the bytes read are fed back to
// the codec, which hands out results in request order (memcached answers in order). What a
// reply means is decided by the core; this file never looks inside one.

const net = require('node:net');
const tls = require('node:tls');
const { performance } = require('node:perf_hooks');
const wasm = require('./wasm');
const { toError } = require('./errors');

/** Settle request `w` with what `f(x)` returns, or reject it with what `f` throws. */
function settleWith(w, f, x) {
  let v;
  try {
    v = f(x);
  } catch (e) {
    w.reject(e);
    return;
  }
  w.resolve(v);
}

/** Request `w` failed with `err`: rejected, or settled with what `w.fail(err)` returns or
 *  throws. */
function failed(w, err) {
  if (w.fail === null) w.reject(err);
  else settleWith(w, w.fail, err);
}

/** The problem of a failed TLS handshake, by the code `node:tls` gave; null when it is not one. */
function tlsProblem(code, message) {
  switch (code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
    case 'CERT_UNTRUSTED':
      return 'untrusted_certificate';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'hostname_mismatch';
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'expired';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
      return 'server_not_tls';
    default:
      if (typeof code === 'string' && /CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|ACCESS_DENIED/.test(code)) {
        return 'client_certificate_rejected';
      }
      if (typeof code === 'string' && code.startsWith('ERR_SSL')) return 'handshake';
      return /wrong version number/i.test(message || '') ? 'server_not_tls' : null;
  }
}

/** Request `w` was answered: the codec put its result in `w.result`. */
function answered(w) {
  const r = w.result;
  w.result = undefined;
  if (w.conv === null) w.resolve(r);
  else settleWith(w, w.conv, r);
}

function flush(conn) {
  conn.flushing = false;
  const codec = conn.codec;
  if (codec === null) return;
  const bytes = codec.transmit();
  if (bytes !== undefined) conn.sock.write(bytes);
}

/**
 * A socket and a timer around the core's connection pipeline (the WASM `Codec`): the probe,
 * the queue of requests and their deadlines, what each reply means and when the connection
 * can no longer be trusted are all the codec's. States: no socket → open (a new socket and
 * codec; requests made before the probe answered wait in the codec) → failed (the socket is
 * dropped and every waiting request rejected; the next request opens a new one).
 */
class Connection {
  /** Server `index` of the client whose WASM `Core` is `core`; `tlsOptions`: `{ca, cert,
   *  key, serverName}` (buffers and a name) for `node:tls`, or null for plain TCP. */
  constructor(core, index, tlsOptions, onFailure) {
    this.tls = tlsOptions;
    this.core = core;
    this.index = index;
    this.address = core.address(index);
    this.host = core.host(index);
    this.port = core.port(index);
    // Called once per request that fails with the connection (the client records health).
    this.onFailure = onFailure || (() => {});
    this.sock = null;
    this.secure = false;
    this.codec = null;
    this.flushing = false;
    this.timer = null;
    this.referenced = false;
    this.closed = false;
  }

  /** The server's version, once a connection's probe answered. */
  get version() {
    return this.codec === null ? undefined : this.codec.serverVersion;
  }

  /** Send a request: `encode(codec, w, now)` queues it in the codec. Resolves with the
   *  codec's result passed through `conv` when given (which may throw, rejecting the call;
   *  without `conv` the result may be an Error the server answered with); rejects on I/O
   *  failure, or, with `fail`, settles with what `fail(error)` returns or throws. */
  request(encode, conv = null, fail = null) {
    return new Promise((resolve, reject) => {
      const w = { conv, fail, resolve, reject, result: undefined };
      if (this.closed) {
        failed(w, toError(wasm.ioError('closed', this.address, 'the client was closed', 0, 'write')));
        return;
      }
      if (this.codec === null) this.connect();
      try {
        encode(this.codec, w, performance.now());
      } catch (e) {
        failed(w, toError(e));
        return;
      }
      if (!this.flushing) {
        // Requests made in the same tick leave in one write.
        this.flushing = true;
        process.nextTick(flush, this);
      }
      if (this.timer === null) this.onTimer();
      if (!this.referenced) {
        this.referenced = true;
        this.sock.ref();
      }
    });
  }

  connect() {
    const t = this.tls;
    let sock;
    if (t === null) {
      sock = net.connect({ host: this.host, port: this.port });
    } else {
      // The certificate must carry the configured name, else the host (an IP is checked as
      // an IP: Node takes no IP as a servername).
      const name = t.serverName ?? this.host;
      sock = tls.connect({
        host: this.host,
        port: this.port,
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        servername: net.isIP(name) ? undefined : name,
        checkServerIdentity: (_, cert) => tls.checkServerIdentity(name, cert),
      });
    }
    sock.setNoDelay(true);
    this.sock = sock;
    this.secure = false;
    this.referenced = true;
    // The codec starts with the probe (`version` + `mn`), due within the connect timeout.
    this.codec = this.core.connection(this.index, performance.now());
    if (t !== null) sock.on('secureConnect', () => {
      this.secure = true;
    });
    sock.on('data', (chunk) => {
      if (this.sock === sock) this.onData(chunk);
    });
    sock.on('error', (err) => {
      if (this.sock !== sock) return;
      this.lost(this.socketError(err));
    });
    sock.on('close', () => {
      if (this.sock === sock) {
        this.lost(wasm.ioError('closed', this.address, 'the server closed the connection', 0, ''));
      }
    });
    if (!this.flushing) {
      this.flushing = true;
      process.nextTick(flush, this);
    }
    this.onTimer();
  }

  /** The core's error for a socket error `err`: a TLS failure (by Node's code) or an I/O one. */
  socketError(err) {
    const code = err && err.code;
    const message = err ? err.message : 'socket error';
    if (this.tls !== null && !this.secure) {
      const problem = tlsProblem(code, message);
      if (problem !== null) return wasm.tlsError(this.address, problem, message);
    }
    const refused = code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH';
    return wasm.ioError(refused ? 'refused' : 'closed', this.address, message, 0, '');
  }

  /** The socket broke with the core error `e`: the codec says what that means (a close in
   *  the TLS handshake, a plain socket closed before the probe's reply), then fail. */
  lost(e) {
    const codec = this.codec;
    const link = this.tls === null ? 'plain' : this.secure ? 'tls' : 'handshake';
    this.fail(toError(codec === null ? e : codec.lost(e, link)));
  }

  onData(chunk) {
    const codec = this.codec;
    if (codec === null) return;
    let w;
    try {
      w = codec.receive(chunk);
      while (w !== undefined) {
        if (w === true) this.onReady();
        else answered(w);
        if (this.codec !== codec) return; // failed or closed meanwhile
        w = codec.poll();
      }
    } catch (e) {
      if (this.codec === codec) this.fail(toError(e));
      return;
    }
    if (this.referenced && codec.pending === 0) {
      // Idle: an idle client does not keep the process alive.
      this.referenced = false;
      this.sock.unref();
    }
  }

  /** The probe answered: the requests made meanwhile are encoded; send them. */
  onReady() {
    const refused = this.codec.ready();
    for (const w of refused) failed(w, toError(w.result));
    flush(this);
    this.onTimer();
  }

  armTimer(ms) {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimer(), Math.max(1, Math.ceil(ms)));
    this.timer.unref();
  }

  /** Wake up for the oldest request's deadline; past it, the connection failed. */
  onTimer() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.codec === null) return;
    let ms;
    try {
      ms = this.codec.check(performance.now());
    } catch (e) {
      // Replies after a lost one cannot be trusted to be in sync: fail the connection.
      this.fail(toError(e));
      return;
    }
    if (ms >= 0) this.armTimer(ms);
  }

  /** Drop the socket and reject everything queued on it with `err`. */
  fail(err) {
    const sock = this.sock;
    const codec = this.codec;
    this.sock = null;
    this.codec = null;
    this.flushing = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (sock !== null) sock.destroy();
    if (codec === null) return;
    const waiting = codec.drain(err);
    codec.free();
    for (const w of waiting) {
      this.onFailure(err);
      failed(w, err);
    }
  }

  close() {
    this.closed = true;
    if (this.codec !== null) {
      this.fail(toError(wasm.ioError('closed', this.address, 'the client was closed', 0, '')));
    }
  }
}

module.exports = { Connection };
