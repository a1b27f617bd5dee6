//! The core's step machines ([`multiput::machine`]) run from JavaScript: every call of the
//! client — plain or replicated reads, writes and read-modify-writes, CAS updates, locks, the
//! `getOrSet` fill. The behaviour is the core's, the same code the Rust, Python and PHP
//! clients run; JavaScript only carries out the steps with its sockets and timers
//! (`js/lib/run.js`):
//!
//! ```js
//! let step = core.get(job, key, false);   // any call of the Core: installs its machine
//! for (;;) {
//!   if (step === STEP) step = job.step(performance.now(), Date.now());
//!   switch (step) {
//!     case SEND:   await all requests i < job.requests(): conn(job.server(i)).request(c => c.call(job, i)),
//!                  an I/O failure reported with job.fail(i, error); break;
//!     case SEND_ONE + 2 s (+ 1): the same for the one request 0, to server s (+ 1: its
//!                  result is the job's value, or its Error: done);
//!     case WAIT:   await sleep(job.value()); break;
//!     case DECIDE: job.decided(fn(job.value())); break;   // or job.decideFailed(error)
//!     case LOAD:   job.loaded(await loader()); break;     // or job.loadFailed(error)
//!     case DONE:   return job.value();
//!     case FAILED: throw job.value();
//!   }
//!   step = STEP;
//! }
//! ```
//!
//! A request's answer goes from the connection's [`crate::Codec`] straight into the job's slot
//! (`Codec::call`, [`answer`]), never through JavaScript. A plain call's machine (a one-shot
//! machine: it reads no clock and its first answers end it) is started when installed, and the
//! codec that gets its answer ends it: that request's result is the call's value, so a plain
//! call costs about what its one request costs. A job that ended holds nothing and takes the
//! next call: JavaScript keeps a few and reuses them (a JavaScript object per call, with its
//! finalizer, costs more than the call's own work).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Object};
use multiput::cluster::Cluster;
use multiput::machine::mode::{Got, Mode};
use multiput::machine::{Answer, Call, Cx, Input, Machine, Now, Step};
use multiput::ops::Value;
use multiput::recipes::{CasOutcome, Fresh, Update};
use multiput::replication::{Versioned, WriteReport};
use multiput::values::{self as core_values, Convention};
use multiput::Error;
use wasm_bindgen::prelude::*;

use crate::calls::JsVal;
use crate::{js, values};

/// What a [`crate::Core`] gives every job it installs: its servers, convention and mode.
pub(crate) type Jobs<'a> = (&'a Rc<Cluster>, Convention, &'a Rc<Mode>);

/// Where the connections put the answers of a job's requests ([`answer`]).
pub(crate) type Slots = Rc<RefCell<Flight>>;

/// The answers of a job's send step, and, when they end the job, its machine: the codec
/// that delivers the answer then ends the job at once ([`answer`]).
#[derive(Default)]
pub(crate) struct Flight {
    /// One per request of the step, in order.
    answers: Vec<Option<Result<Answer, Error>>>,
    last: Option<Run>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("answers", &self.answers)
            .field("last", &self.last.is_some())
            .finish()
    }
}

/// What [`Job::step`] asks for.
const SEND: u32 = 0;
const WAIT: u32 = 1;
const DECIDE: u32 = 2;
const LOAD: u32 = 3;
const DONE: u32 = 4;
const FAILED: u32 = 5;
/// Take the next step with [`Job::step`], with the time (what a call returns when its machine
/// reads the clock to start).
const STEP: u32 = 6;
/// `SEND_ONE + 2 s`: send one request (request 0) to server `s`, and step again after its
/// answer; `SEND_ONE + 2 s + 1`: the same, but the answer ends the job: the codec hands out
/// the job's value (or its `Error`) as the request's result. The step of most calls, told in
/// the step's answer rather than asked for in more calls.
const SEND_ONE: u32 = 8;

/// What a job ends with: its value, or the error it failed with (the core's, or a JavaScript
/// error made while handing out the value, such as a value JavaScript cannot read).
pub(crate) type Outcome = Result<JsValue, JsValue>;

/// A machine with its output and view made JavaScript values.
trait Erased {
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Outcome, JsValue>;
}

struct Wrap<M, O, V> {
    m: M,
    out: O,
    view: V,
}

impl<M, O, V> Erased for Wrap<M, O, V>
where
    M: Machine,
    O: Fn(M::Output) -> Outcome,
    V: Fn(&M::View) -> JsValue,
{
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Outcome, JsValue> {
        match self.m.step(cx, input) {
            Step::Send(r) => Step::Send(r),
            Step::Wait(d) => Step::Wait(d),
            Step::Decide(v) => Step::Decide(Some(v.as_ref().map_or(JsValue::NULL, &self.view))),
            Step::Load => Step::Load,
            Step::Done(r) => Step::Done(r.map(&self.out)),
        }
    }
}

/// What the next [`Job::step`] passes to the machine.
enum Next {
    Start,
    Answers,
    Woke,
    Decided(Result<Update, Error>),
    Loaded(Result<Fresh, Error>),
    Finished,
}

/// A machine being run, and what it runs with.
struct Run {
    cluster: Rc<Cluster>,
    machine: Box<dyn Erased>,
    convention: Convention,
    /// The client's mode: the form a decided or loaded value is stored in.
    mode: Rc<Mode>,
}

/// Runs of core machines, driven by JavaScript (see the module docs): one at a time, each
/// installed by a call of the [`crate::Core`].
#[wasm_bindgen]
pub struct Job {
    /// `None` until a call is installed, and again once it ended (or while its last answer is
    /// awaited: then the [`Flight`] holds it).
    run: Option<Run>,
    /// The last send step's requests: each one's server, and its call until a codec took it.
    requests: Vec<(usize, Option<Call>)>,
    pub(crate) slots: Slots,
    next: Next,
    value: JsValue,
}

impl Job {
    /// Install machine `m` (for the core `core`: its servers, convention and mode), done
    /// with `out` of its output and showing `view` of its view at decide steps. Returns
    /// [`STEP`]: the driver takes the first step, with the time.
    pub(crate) fn install<M, O, V>(&mut self, core: Jobs<'_>, m: M, out: O, view: V) -> u32
    where
        M: Machine + 'static,
        O: Fn(M::Output) -> Outcome + 'static,
        V: Fn(&M::View) -> JsValue + 'static,
    {
        self.reset();
        self.run = Some(Run {
            cluster: core.0.clone(),
            machine: Box::new(Wrap { m, out, view }),
            convention: core.1,
            mode: core.2.clone(),
        });
        self.next = Next::Start;
        STEP
    }

    /// Install a one-shot machine, one that reads no clock and ends with the answers of its
    /// first send step (a plain call: `machine::plain`), and take its first step. Returns
    /// that step: most often `SEND_ONE + 2 s + 1`, one request whose answer the codec turns
    /// into the job's value.
    pub(crate) fn install_oneshot<M, O>(&mut self, core: Jobs<'_>, m: M, out: O) -> u32
    where
        M: Machine + 'static,
        O: Fn(M::Output) -> Outcome + 'static,
    {
        self.install(core, m, out, |_| JsValue::NULL);
        let code = self.advance(Now::default());
        if code >= SEND_ONE {
            self.slots.borrow_mut().last = self.run.take();
            return code + 1;
        }
        code
    }

    /// Request `i`'s call, for the codec that sends it (taken: a request is sent once).
    pub(crate) fn take_call(&mut self, i: u32) -> Option<Call> {
        self.requests.get_mut(i as usize)?.1.take()
    }

    fn running(&self) -> Result<&Run, JsValue> {
        self.run
            .as_ref()
            .ok_or_else(|| js::error(&driver_bug("the job runs no call")))
    }
}

impl Default for Job {
    fn default() -> Job {
        Job::new()
    }
}

fn driver_bug(what: &str) -> Error {
    Error::Client {
        server: String::new(),
        message: format!("{what} (a driver bug)"),
    }
}

#[wasm_bindgen]
impl Job {
    /// An empty job: a call of the [`crate::Core`] installs its machine.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Job {
        Job {
            run: None,
            requests: Vec::new(),
            slots: Rc::default(),
            next: Next::Finished,
            value: JsValue::UNDEFINED,
        }
    }

    /// Drop the call this job runs (when its driver gives up on it before it ended).
    pub fn reset(&mut self) {
        self.run = None;
        self.requests.clear();
        // Answers of an earlier run never land in the next one's: a codec still holding its
        // flight (it never does once the run ended) keeps the old one.
        if Rc::strong_count(&self.slots) > 1 {
            self.slots = Rc::default();
        } else {
            let mut f = self.slots.borrow_mut();
            f.answers.clear();
            f.last = None;
        }
        self.next = Next::Finished;
        self.value = JsValue::UNDEFINED;
    }

    /// Take the next step at monotonic time `mono_ms` (`performance.now()`) and wall time
    /// `wall_ms` (`Date.now()`): 0 send the `requests()`, 1 wait `value()` ms, 2 decide on
    /// `value()`, 3 load, 4 done with `value()`, 5 failed with the error `value()`;
    /// `8 + 2 s`: send the one request to server `s`.
    pub fn step(&mut self, mono_ms: f64, wall_ms: f64) -> u32 {
        self.advance(Now {
            mono: Duration::from_secs_f64(mono_ms.max(0.0) / 1000.0),
            wall_ms: js::ms(wall_ms),
        })
    }

    fn advance(&mut self, now: Now) -> u32 {
        let input = match std::mem::replace(&mut self.next, Next::Finished) {
            Next::Start => Input::Start,
            Next::Answers => {
                let mut f = self.slots.borrow_mut();
                // A last answer that never came (its request failed): the machine is back.
                if let Some(run) = f.last.take() {
                    self.run = Some(run);
                }
                Input::Answers(drain(&mut f.answers))
            }
            Next::Woke => Input::Woke,
            Next::Decided(d) => Input::Decided(d),
            Next::Loaded(l) => Input::Loaded(l),
            Next::Finished => return self.finish(Err(driver_bug("step() after the job ended"))),
        };
        let Some(run) = self.run.as_mut() else {
            return self.finish(Err(driver_bug("the job runs no call")));
        };
        let cx = Cx {
            cluster: &run.cluster,
            now,
        };
        match run.machine.step(&cx, input) {
            Step::Send(r) => {
                let mut f = self.slots.borrow_mut();
                f.answers.clear();
                f.answers.resize(r.len(), None);
                drop(f);
                let code = match &r[..] {
                    [one] => SEND_ONE + 2 * one.server as u32,
                    _ => SEND,
                };
                self.requests.clear();
                self.requests
                    .extend(r.into_iter().map(|q| (q.server, Some(q.call))));
                self.next = Next::Answers;
                code
            }
            Step::Wait(d) => {
                self.value = JsValue::from_f64(d.as_secs_f64() * 1000.0);
                self.next = Next::Woke;
                WAIT
            }
            Step::Decide(v) => {
                self.value = v.unwrap_or(JsValue::NULL);
                self.next = Next::Decided(Err(driver_bug("no decision was passed")));
                DECIDE
            }
            Step::Load => {
                self.next = Next::Loaded(Err(driver_bug("no loaded value was passed")));
                LOAD
            }
            Step::Done(r) => self.finish(r),
        }
    }

    fn finish(&mut self, r: Result<Outcome, Error>) -> u32 {
        self.next = Next::Finished;
        self.run = None;
        self.requests.clear();
        match r {
            Ok(Ok(v)) => {
                self.value = v;
                DONE
            }
            Ok(Err(e)) => {
                self.value = e;
                FAILED
            }
            Err(e) => {
                self.value = js::error(&e);
                FAILED
            }
        }
    }

    /// The number of requests of the last send step.
    pub fn requests(&self) -> u32 {
        self.requests.len() as u32
    }

    /// The server of request `i`.
    pub fn server(&self, i: u32) -> u32 {
        self.requests.get(i as usize).map_or(0, |r| r.0 as u32)
    }

    /// The step's value: the pause (ms), the view to decide on, the result or the error.
    /// Taken: the job no longer holds it.
    pub fn value(&mut self) -> JsValue {
        std::mem::replace(&mut self.value, JsValue::UNDEFINED)
    }

    /// Request `i` could not be sent or answered (an I/O error, a server marked down).
    pub fn fail(&mut self, i: u32, error: &JsValue) {
        if let Some(s) = self.slots.borrow_mut().answers.get_mut(i as usize) {
            *s = Some(Err(js::error_from_js(error)));
        }
    }

    /// The caller's function returned `value`: store it (`keep`: leave the key; `remove`:
    /// delete it).
    pub fn decided(&mut self, value: &JsValue, keep: bool, remove: bool) -> Result<(), JsValue> {
        let update = if keep {
            Update::Keep
        } else if remove {
            Update::Delete
        } else {
            let r = self.running()?;
            r.mode.encode(&JsVal(r.convention, value))?.into()
        };
        self.next = Next::Decided(Ok(update));
        Ok(())
    }

    /// The caller's function threw: the job ends with `error` (as a `Loader`-kind error of
    /// its message; the JS side rethrows the original).
    #[wasm_bindgen(js_name = decideFailed)]
    pub fn decide_failed(&mut self, message: &str) {
        self.next = Next::Decided(Err(Error::Loader(message.to_string())));
    }

    /// The loader produced `value`.
    pub fn loaded(&mut self, value: &JsValue) -> Result<(), JsValue> {
        let r = self.running()?;
        let fresh = r.mode.encode(&JsVal(r.convention, value))?.into();
        self.next = Next::Loaded(Ok(fresh));
        Ok(())
    }

    /// The loader threw `message`.
    #[wasm_bindgen(js_name = loadFailed)]
    pub fn load_failed(&mut self, message: &str) {
        self.next = Next::Loaded(Err(Error::Loader(message.to_string())));
    }
}

fn drain(answers: &mut Vec<Option<Result<Answer, Error>>>) -> Vec<Result<Answer, Error>> {
    answers
        .drain(..)
        .map(|s| s.unwrap_or_else(|| Err(driver_bug("a request got no answer"))))
        .collect()
}

/// Request `i`'s answer, from the codec that got it. Its result for the request: `true`, or,
/// when the answer ends the job (a one-shot machine's last request), the job's value, or the
/// `Error` it failed with.
pub(crate) fn answer(flight: &Slots, i: usize, r: Result<Answer, Error>) -> JsValue {
    let mut f = flight.borrow_mut();
    if let Some(s) = f.answers.get_mut(i) {
        *s = Some(r);
    }
    let Some(mut run) = f.last.take() else {
        return JsValue::TRUE;
    };
    let answers = drain(&mut f.answers);
    drop(f);
    // One-shot machines read no clock.
    let cx = Cx {
        cluster: &run.cluster,
        now: Now::default(),
    };
    match run.machine.step(&cx, Input::Answers(answers)) {
        Step::Done(Ok(Ok(v))) => v,
        Step::Done(Ok(Err(e))) => e,
        Step::Done(Err(e)) => js::error(&e),
        _ => js::error(&driver_bug("a one-shot call did not end with its answers")),
    }
}

// ---- outputs as JavaScript values ----------------------------------------------------------

/// A plain value as JavaScript (typed by its flags under the convention; a tombstone is
/// `null`), or the error of a value JavaScript cannot read.
pub(crate) fn plain_value(convention: Convention, v: &Value) -> Outcome {
    values::stored_to_js(convention, &v.data, v.flags).map(|x| x.unwrap_or(JsValue::NULL))
}

/// A replicated value as JavaScript, or the error of a value JavaScript cannot read.
pub(crate) fn versioned_value(convention: Convention, v: &Versioned) -> Outcome {
    values::typed_to_js(core_values::from_versioned(convention, v))
}

/// A value as read, plain (typed by its flags) or replicated (by its envelope), as JavaScript.
pub(crate) fn got_value(convention: Convention, g: &Got) -> Outcome {
    match g {
        Got::Plain(v) => plain_value(convention, v),
        Got::Replicated(v) => versioned_value(convention, v),
    }
}

/// [`got_value`] with an unreadable value as an `Error` value (a view to decide on).
pub(crate) fn got_js(convention: Convention, g: &Got) -> JsValue {
    got_value(convention, g).unwrap_or_else(|e| e)
}

/// `{value, cas}`: a value with its CAS unique or version token (a `BigInt`).
pub(crate) fn with_cas(value: JsValue, cas: Option<u64>) -> JsValue {
    let o = Object::new();
    js::set(&o, "value", value);
    js::set(&o, "cas", cas.map_or(JsValue::UNDEFINED, js::big));
    o.into()
}

/// A write report as `[stored, failed]`: the addresses that stored it and `[{server,
/// error}]`. The JavaScript client copies it into a fresh `{stored, failed}` (an object
/// literal there costs less than one made property by property from here, and a plain
/// write's report, `Core::stored_on`, is made once per server).
pub(crate) fn report_js(r: &WriteReport) -> JsValue {
    let stored: Array = r.stored.iter().map(|s| JsValue::from_str(s)).collect();
    js::array(&[&stored, &js::failure_list(&r.failed)]).into()
}

/// `{outcome: 'stored'|'unchanged'|'deleted', attempts}`.
pub(crate) fn outcome_js(o: &CasOutcome) -> Object {
    let x = Object::new();
    let name = match o {
        CasOutcome::Stored { .. } => "stored",
        CasOutcome::Unchanged { .. } => "unchanged",
        CasOutcome::Deleted { .. } => "deleted",
    };
    js::set(&x, "outcome", name);
    js::set(&x, "attempts", o.attempts());
    x
}

/// `[[server, cas], ...]` as JavaScript (the cas a `BigInt`).
pub(crate) fn holds_js(holds: &[(usize, u64)]) -> Array {
    holds
        .iter()
        .map(|&(s, c)| -> JsValue {
            [JsValue::from(s as u32), js::big(c)]
                .into_iter()
                .collect::<Array>()
                .into()
        })
        .collect()
}

/// `[[server, cas], ...]` from JavaScript.
pub(crate) fn holds_of(a: &Array) -> Vec<(usize, u64)> {
    a.iter()
        .filter_map(|h| {
            let s = js_sys::Reflect::get_u32(&h, 0).ok()?.as_f64()? as usize;
            let c = js::u64_of(&js_sys::Reflect::get_u32(&h, 1).ok()?)?;
            Some((s, c))
        })
        .collect()
}

/// Per-key results aligned with the keys a call was given: `refused[i]` is the error of key
/// `i` when it was refused before the machine ran (its value could not be converted), else
/// the next of the machine's `results`, made JavaScript by `f` (an error as an `Error`).
pub(crate) fn splice<T>(
    refused: &[Option<JsValue>],
    results: Vec<Result<T, Error>>,
    f: impl Fn(T) -> JsValue,
) -> Array {
    let mut rs = results.into_iter();
    refused
        .iter()
        .map(|r| match r {
            Some(e) => e.clone(),
            None => match rs.next() {
                Some(Ok(v)) => f(v),
                Some(Err(e)) => js::error(&e),
                None => JsValue::NULL,
            },
        })
        .collect()
}
