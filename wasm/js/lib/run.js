'use strict';
// The driver loop of the Node client: it runs any of the core's step machines (a WASM Job,
// wasm/src/job.rs), as the Rust clients' `drive` does. The behaviour is the core's; this only
// sends, sleeps and calls back.

const { performance } = require('node:perf_hooks');
const { toError } = require('./errors');
const { DELETE, out, sleep } = require('./util');

// What a core Job (one of the core's step machines) asks for next; see wasm/src/job.rs.
const SEND = 0;
const WAIT = 1;
const DECIDE = 2;
const LOAD = 3;
const DONE = 4;

/** A seed for a job's jitter (the core's machines draw no randomness of their own). */
function seed() {
  return Math.floor(Math.random() * 2 ** 53);
}

/**
 * Drive one of the core's step machines (a Job, wasm/src/job.rs) to its end: send what it
 * asks (every request at once, each on its server's pipelined connection), sleep when it
 * says, call `decide` / `load` when it says. The behaviour is the core's; this is the same
 * loop the Rust clients run.
 */
async function run(client, job, decide, load) {
  let thrown;
  try {
    for (;;) {
      switch (job.step(performance.now(), Date.now())) {
        case SEND: {
          const n = job.requests();
          const sent = new Array(n);
          for (let i = 0; i < n; i++) {
            sent[i] = client._call(job.server(i), (c) => c.call(job, i)).then(undefined, (e) => job.fail(i, e));
          }
          await Promise.all(sent);
          break;
        }
        case WAIT:
          await sleep(job.value());
          break;
        case DECIDE: {
          let next;
          try {
            next = await decide(out(job.value()));
          } catch (e) {
            thrown = e;
            job.decideFailed(String(e && e.message ? e.message : e));
            break;
          }
          job.decided(next === undefined || next === DELETE ? null : next, next === undefined, next === DELETE);
          break;
        }
        case LOAD: {
          let value;
          try {
            value = await load();
          } catch (e) {
            thrown = e;
            job.loadFailed(String(e && e.message ? e.message : e));
            break;
          }
          job.loaded(value);
          break;
        }
        case DONE:
          return job.value();
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
    job.free();
  }
}

module.exports = { run, seed };
