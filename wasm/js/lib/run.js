'use strict';
// The driver loop of the Node client: it runs every call, each one of the core's step
// machines (a WASM Job, wasm/src/job.rs), as the Rust clients' `drive` does. The behaviour is
// the core's; this only sends, sleeps and calls back.

const { performance } = require('node:perf_hooks');
const wasm = require('./wasm');
const { toError } = require('./errors');
const { DELETE, out, sleep } = require('./util');

// What a core Job (one of the core's step machines) asks for next; see wasm/src/job.rs.
const SEND = 0;
const WAIT = 1;
const DECIDE = 2;
const LOAD = 3;
const DONE = 4;
const STEP = 6; // take the next step (with the time)
// SEND_ONE + 2 s: one request, to server s, then step again; SEND_ONE + 2 s + 1: one request
// whose answer ends the job (the codec hands out the job's value, or its Error).
const SEND_ONE = 8;

/**
 * One call in flight: its job and the callbacks a connection calls for a one-request step.
 * Flights are reused (a job holds nothing once it ended): a new WASM object per call, with its
 * finalizer, and new callbacks would cost more than the call's own work.
 */
class Flight {
  constructor() {
    this.job = new wasm.Job();
    this.client = null;
    this.shape = undefined;
    this.decide = undefined;
    this.load = undefined;
    this.encode = (c, w, now) => c.call(this.job, 0, w, now);
    this.stepped = () => this.next(STEP);
    this.ended = (r) => this.end(r);
    this.failed = (e) => {
      this.job.fail(0, e);
      return this.next(STEP);
    };
  }

  /**
   * From `step` on. A step that sends one request (most calls) continues from the
   * connection's answer (or failure) without a turn of its own; when that answer ends the job
   * (a plain call) the codec hands out the call's value itself, so such a call costs what its
   * request costs. The other steps go to `drive`.
   */
  next(step) {
    const job = this.job;
    if (step === STEP) step = job.step(performance.now(), Date.now());
    if (step >= SEND_ONE) {
      const then = (step & 1) === 1 ? this.ended : this.stepped;
      return this.client._call((step - SEND_ONE) >>> 1, this.encode, then, this.failed);
    }
    if (step === DONE) return this.end(job.value());
    return drive(this, step);
  }

  /** The job ended with `r` (an Error when it failed). */
  end(r) {
    const shape = this.shape;
    release(this);
    if (r instanceof Error) throw toError(r);
    return shape === undefined ? r : shape(r);
  }
}

const idle = [];
const IDLE_MAX = 256;

function release(f) {
  f.client = null;
  f.shape = undefined;
  f.decide = undefined;
  f.load = undefined;
  if (idle.length < IDLE_MAX) idle.push(f);
  else f.job.free();
}

/** A seed for a job's jitter (the core's machines draw no randomness of their own). */
function seed() {
  return Math.floor(Math.random() * 2 ** 53);
}

function message(e) {
  return String(e && e.message ? e.message : e);
}

/**
 * Run one call: `install(job)` has the core put the call's machine in a job (and returns its
 * first step); then drive it to its end: send what it asks (every request at once, each on its
 * server's pipelined connection), sleep when it says, call `decide` / `load` when it says.
 * Resolves with what it ended with, passed through `shape` when given. The behaviour is the
 * core's; this is the same loop the Rust clients run.
 */
function run(client, install, shape, decide, load) {
  const f = idle.length > 0 ? idle.pop() : new Flight();
  let step;
  try {
    step = install(f.job);
  } catch (e) {
    release(f);
    return Promise.reject(toError(e));
  }
  f.client = client;
  f.shape = shape;
  f.decide = decide;
  f.load = load;
  try {
    return Promise.resolve(f.next(step));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The other steps of flight `f`, from `step` on, to the end of its job. */
async function drive(f, step) {
  const { client, job, shape, decide, load } = f;
  let thrown;
  try {
    for (;; step = job.step(performance.now(), Date.now())) {
      switch (step >= SEND_ONE ? SEND : step) {
        case SEND: {
          const n = job.requests();
          const sent = new Array(n);
          for (let i = 0; i < n; i++) {
            sent[i] = client._call(job.server(i), (c, w, now) => c.call(job, i, w, now)).then(undefined, (e) => job.fail(i, e));
          }
          await Promise.all(sent);
          break;
        }
        case WAIT:
          await sleep(job.value());
          break;
        case DECIDE: {
          let value;
          try {
            value = await decide(out(job.value()));
          } catch (e) {
            thrown = e;
            job.decideFailed(message(e));
            break;
          }
          job.decided(value === undefined || value === DELETE ? null : value, value === undefined, value === DELETE);
          break;
        }
        case LOAD: {
          let value;
          try {
            value = await load();
          } catch (e) {
            thrown = e;
            job.loadFailed(message(e));
            break;
          }
          job.loaded(value);
          break;
        }
        case DONE: {
          const v = job.value();
          return shape === undefined ? v : shape(v);
        }
        default: {
          const err = toError(job.value());
          // The caller's own function threw: rethrow its error (a loader's, wrapped in a
          // LoaderError that keeps it as the cause).
          if (thrown !== undefined && err.kind === 'Loader') {
            if (load === undefined) throw thrown;
            err.cause = thrown;
          }
          throw err;
        }
      }
    }
  } finally {
    job.reset();
    release(f);
  }
}

module.exports = { run, seed };
