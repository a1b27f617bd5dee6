//! The core's step machines ([`multiput::machine`]) run from JavaScript: CAS updates, locks,
//! the `getOrSet` fill, replicated reads, writes and read-modify-writes. The behaviour is the
//! core's, the same code the Rust, Python and PHP clients run; JavaScript only carries out the
//! steps with its sockets and timers:
//!
//! ```js
//! for (;;) switch (job.step(performance.now(), Date.now())) {
//!   case SEND:   await all requests i < job.requests(): conn(job.server(i)).request(c => c.call(job, i)),
//!                an I/O failure reported with job.fail(i, error); break;
//!   case WAIT:   await sleep(job.value()); break;
//!   case DECIDE: job.decided(fn(job.value())); break;   // or job.decideFailed(error)
//!   case LOAD:   job.loaded(await loader()); break;     // or job.loadFailed(error)
//!   case DONE:   return job.value();
//!   case FAILED: throw job.value();
//! }
//! ```
//!
//! A request's answer goes from the connection's [`crate::Codec`] straight into the job's slot
//! (`Codec::call`), never through JavaScript.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Object};
use multiput::cluster::Cluster;
use multiput::machine::{self, Answer, Cx, Input, Machine, Now, Request, Step};
use multiput::ops::Value;
use multiput::recipes::{CasOutcome, Fresh, Update};
use multiput::replication::{Versioned, WriteReport};
use multiput::values::{self as core_values, Convention};
use multiput::Error;
use wasm_bindgen::prelude::*;

use crate::{js, values};

/// Where the connections put the answers of a job's requests.
pub(crate) type Slots = Rc<RefCell<Vec<Option<Result<Answer, Error>>>>>;

/// What [`Job::step`] asks for.
const SEND: u8 = 0;
const WAIT: u8 = 1;
const DECIDE: u8 = 2;
const LOAD: u8 = 3;
const DONE: u8 = 4;
const FAILED: u8 = 5;

/// A machine with its output and view made JavaScript values.
trait Erased {
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<JsValue, JsValue>;
}

struct Wrap<M, O, V> {
    m: M,
    out: O,
    view: V,
}

impl<M, O, V> Erased for Wrap<M, O, V>
where
    M: Machine,
    O: Fn(M::Output) -> JsValue,
    V: Fn(&M::View) -> JsValue,
{
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<JsValue, JsValue> {
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

/// One run of a core machine, driven by JavaScript (see the module docs).
#[wasm_bindgen]
pub struct Job {
    cluster: Rc<Cluster>,
    machine: Box<dyn Erased>,
    requests: Vec<Request>,
    pub(crate) slots: Slots,
    next: Next,
    value: JsValue,
    convention: Convention,
    replicated: bool,
}

impl Job {
    pub(crate) fn new<M, O, V>(
        cluster: Rc<Cluster>,
        convention: Convention,
        replicated: bool,
        m: M,
        out: O,
        view: V,
    ) -> Job
    where
        M: Machine + 'static,
        O: Fn(M::Output) -> JsValue + 'static,
        V: Fn(&M::View) -> JsValue + 'static,
    {
        Job {
            cluster,
            machine: Box::new(Wrap { m, out, view }),
            requests: Vec::new(),
            slots: Rc::new(RefCell::new(Vec::new())),
            next: Next::Start,
            value: JsValue::UNDEFINED,
            convention,
            replicated,
        }
    }

    /// Request `i`, for the codec.
    pub(crate) fn request(&self, i: u32) -> Option<&Request> {
        self.requests.get(i as usize)
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
    /// Take the next step at monotonic time `mono_ms` (`performance.now()`) and wall time
    /// `wall_ms` (`Date.now()`): 0 send the requests, 1 wait `value()` ms, 2 decide on
    /// `value()`, 3 load, 4 done with `value()`, 5 failed with the error `value()`.
    pub fn step(&mut self, mono_ms: f64, wall_ms: f64) -> u8 {
        let input = match std::mem::replace(&mut self.next, Next::Finished) {
            Next::Start => Input::Start,
            Next::Answers => {
                let mut slots = self.slots.borrow_mut();
                Input::Answers(
                    slots
                        .drain(..)
                        .map(|s| s.unwrap_or_else(|| Err(driver_bug("a request got no answer"))))
                        .collect(),
                )
            }
            Next::Woke => Input::Woke,
            Next::Decided(d) => Input::Decided(d),
            Next::Loaded(l) => Input::Loaded(l),
            Next::Finished => return self.finish(Err(driver_bug("step() after the job ended"))),
        };
        let cx = Cx {
            cluster: &self.cluster,
            now: Now {
                mono: Duration::from_secs_f64(mono_ms.max(0.0) / 1000.0),
                wall_ms: js::ms(wall_ms),
            },
        };
        match self.machine.step(&cx, input) {
            Step::Send(r) => {
                *self.slots.borrow_mut() = vec![None; r.len()];
                self.requests = r;
                self.next = Next::Answers;
                SEND
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

    fn finish(&mut self, r: Result<JsValue, Error>) -> u8 {
        self.next = Next::Finished;
        match r {
            Ok(v) => {
                self.value = v;
                DONE
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
        self.requests.get(i as usize).map_or(0, |r| r.server as u32)
    }

    /// The step's value: the pause (ms), the view to decide on, the result or the error.
    pub fn value(&self) -> JsValue {
        self.value.clone()
    }

    /// Request `i` could not be sent or answered (an I/O error, a server marked down).
    pub fn fail(&mut self, i: u32, error: &JsValue) {
        if let Some(s) = self.slots.borrow_mut().get_mut(i as usize) {
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
        } else if self.replicated {
            let t = values::typed_from_js(value)?;
            Update::Typed(t.vtype(), t.format(), t.encode_payload())
        } else {
            let (data, flags) = values::plain_from_js(self.convention, value)?;
            Update::Plain(data, flags)
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
        let t = values::typed_from_js(value)?;
        let (data, flags) = if self.replicated {
            (t.encode_payload(), 0)
        } else {
            values::plain_from_js(self.convention, value)?
        };
        self.next = Next::Loaded(Ok(Fresh {
            data,
            flags,
            typed: Some((t.vtype(), t.format())),
        }));
        Ok(())
    }

    /// The loader threw `message`.
    #[wasm_bindgen(js_name = loadFailed)]
    pub fn load_failed(&mut self, message: &str) {
        self.next = Next::Loaded(Err(Error::Loader(message.to_string())));
    }
}

// ---- outputs as JavaScript values ----------------------------------------------------------

/// A plain value as JavaScript (typed by its flags under the convention).
pub(crate) fn plain_js(convention: Convention, v: &Value) -> JsValue {
    match values::stored_to_js(convention, &v.data, v.flags) {
        Ok(Some(x)) => x,
        Ok(None) => JsValue::NULL,
        Err(e) => e,
    }
}

/// A replicated value as JavaScript; an unreadable one is an `Error` value.
pub(crate) fn versioned_js(convention: Convention, v: &Versioned) -> JsValue {
    values::typed_to_js(core_values::from_versioned(convention, v)).unwrap_or_else(|e| e)
}

/// `{stored: [address], failed: [{server, error}]}`.
pub(crate) fn report_js(r: &WriteReport) -> JsValue {
    let o = Object::new();
    js::set(
        &o,
        "stored",
        r.stored
            .iter()
            .map(|s| JsValue::from_str(s))
            .collect::<Array>(),
    );
    js::set(&o, "failed", js::failure_list(&r.failed));
    o.into()
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

/// Per-key results: a value, `null` (miss) or an `Error`.
pub(crate) fn results_js<T>(rs: Vec<Result<T, Error>>, f: impl Fn(T) -> JsValue) -> Array {
    rs.into_iter()
        .map(|r| match r {
            Ok(v) => f(v),
            Err(e) => js::error(&e),
        })
        .collect()
}

/// Build a job over the machine `m`.
pub(crate) fn job<M, O, V>(core: (&Rc<Cluster>, Convention, bool), m: M, out: O, view: V) -> Job
where
    M: Machine + 'static,
    O: Fn(M::Output) -> JsValue + 'static,
    V: Fn(&M::View) -> JsValue + 'static,
{
    Job::new(core.0.clone(), core.1, core.2, m, out, view)
}

pub(crate) use machine::replicated::Rule;
