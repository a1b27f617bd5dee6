'use strict';
// Test harness: real memcached processes on free 127.0.0.1 ports, started by the tests and
// stopped by PID; paths to the repo's vectors and to the Rust CLI.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

/** The repository root (…/wasm/js/support → …). */
const REPO = path.resolve(__dirname, '..', '..', '..');

/** The ketama vectors (made by libmemcached: scripts/gen-ketama-vectors.sh), in the repo. */
const RING_VECTORS = process.env.MULTIPUT_VECTORS_DIR || path.join(REPO, 'docs', 'vectors', 'ring');
const ENVELOPE_VECTORS = process.env.MULTIPUT_ENVELOPE_VECTORS || path.join(REPO, 'docs', 'vectors', 'envelope.json');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One memcached process. */
class Memcached {
  /** `extra`: more memcached arguments (e.g. `-Y FILE`). */
  constructor(port, extra = []) {
    this.port = port;
    this.extra = extra;
    this.proc = null;
  }

  get address() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    const args = ['-l', '127.0.0.1', '-p', String(this.port), '-U', '0', '-m', '64', '-t', '1'];
    if (typeof process.getuid === 'function' && process.getuid() === 0) args.unshift('-u', 'root');
    this.proc = spawn('memcached', [...args, ...this.extra], { stdio: 'ignore' });
    this.proc.unref();
    this.exited = new Promise((resolve) => this.proc.once('exit', resolve));
    for (let i = 0; i < 200; i++) {
      if (await canConnect(this.port)) return this;
      if (this.proc.exitCode !== null) break;
      await sleep(10);
    }
    throw new Error(`memcached did not start on port ${this.port}`);
  }

  /** Stop it (SIGKILL by PID) and wait for the exit. */
  async kill() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.ref(); // keep the event loop alive until the exit is seen
      process.kill(this.proc.pid, 'SIGKILL');
      await this.exited;
    }
    this.proc = null;
  }

  /** SIGSTOP, and wait until the kernel shows it stopped (so no request slips through). */
  async pause() {
    process.kill(this.proc.pid, 'SIGSTOP');
    for (let i = 0; i < 200; i++) {
      const stat = fs.readFileSync(`/proc/${this.proc.pid}/stat`, 'latin1');
      if (/^\d+ \(.*\) T /.test(stat)) return;
      await sleep(5);
    }
    throw new Error('memcached did not stop');
  }

  resume() {
    process.kill(this.proc.pid, 'SIGCONT');
  }
}

/** Start `n` servers on free ports. */
async function startServers(n, extra = []) {
  const servers = [];
  for (let i = 0; i < n; i++) {
    for (let attempt = 0; ; attempt++) {
      const m = new Memcached(await freePort(), extra);
      try {
        servers.push(await m.start());
        break;
      } catch (e) {
        await m.kill();
        if (attempt >= 5) throw e;
      }
    }
  }
  return servers;
}

async function stopServers(servers) {
  for (const s of servers) await s.kill();
}

/** A raw text-protocol exchange with one server (to look at what is really stored). */
function raw(port, request, until = /END\r\n$/) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    s.on('connect', () => s.write(request));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (until.test(buf.toString('latin1'))) {
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', reject);
    setTimeout(() => {
      s.destroy();
      reject(new Error(`raw request timed out: ${JSON.stringify(request)}`));
    }, 2000).unref();
  });
}

/** `{data, flags}` of `key` as stored on one server, or null (plain `get`, no client logic). */
async function rawGet(port, key) {
  const b = await raw(port, `get ${key}\r\n`);
  const head = b.indexOf('\r\n');
  const line = b.subarray(0, head).toString('latin1');
  if (line === 'END') return null;
  const [, , flags, len] = line.split(' ');
  return { flags: Number(flags), data: b.subarray(head + 2, head + 2 + Number(len)) };
}

/** The Rust CLI (`cargo build -p multiput-cli` → target/debug/multiput). */
function cliPath() {
  const bin = process.env.MULTIPUT_CLI || path.join(REPO, 'target', 'debug', 'multiput');
  return fs.existsSync(bin) ? bin : null;
}

function cli(args, input) {
  const bin = cliPath();
  const r = spawnSync(bin, args, { input, encoding: 'buffer', timeout: 20000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr ? r.stderr.toString() : '' };
}

module.exports = {
  REPO,
  RING_VECTORS,
  ENVELOPE_VECTORS,
  Memcached,
  startServers,
  stopServers,
  raw,
  rawGet,
  cliPath,
  cli,
  sleep,
  freePort,
};
