//! One connection's codec: the core's connection pipeline ([`multiput::pipeline`]: the probe,
//! the queue of reply readers, deadlines, bytes nobody asked for, out-of-step replies) with
//! requests encoded by the core's calls and replies interpreted by them.
//!
//! JavaScript keeps only the socket and one timer (`js/lib/connection.js`): it writes what
//! [`Codec::transmit`] returns, feeds what the socket reads to [`Codec::receive`], arms its
//! timer for what [`Codec::check`] says, and settles the callers [`Codec::receive`] and
//! [`Codec::poll`] hand back, in request order (memcached answers in order on a connection).

use bytes::BytesMut;
use js_sys::{Array, Object};
use multiput::cluster::Cluster;
use multiput::machine::Call;
use multiput::ops::{self, Op};
use multiput::pipeline::{Event, Link, Pipeline};
use multiput::protocol::{Dialect, Expect, Reply};
use multiput::{Error, ProtocolChoice};
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::prelude::*;

use crate::js;

/// A request: what to send and what its answer means.
enum Request {
    /// Request `i` of a [`crate::Job`]: its answer goes into the job's slot.
    Job {
        call: Call,
        slots: crate::job::Slots,
        i: usize,
    },
    Version,
    Stats(Option<String>),
    FlushAll(Option<u32>),
}

#[wasm_bindgen]
extern "C" {
    /// A caller's waiter object: the codec sets its `result`.
    type WaiterObject;
    #[wasm_bindgen(method, setter = result)]
    fn set_result(this: &WaiterObject, result: &JsValue);
}

/// Hand `result` to the caller waiting on `waiter` (`waiter.result = result`).
fn settle(waiter: &JsValue, result: &JsValue) {
    waiter.unchecked_ref::<WaiterObject>().set_result(result);
}

/// A request waiting for its reply: the request and its caller's waiter object.
struct Waiter {
    request: Request,
    waiter: JsValue,
}

/// The codec of one connection (create one per socket, when it opens; drop it with the socket).
///
/// Each request method takes the caller's waiter object (any object) and the time
/// (`performance.now()`), queues the request, and throws when it cannot be sent (invalid key,
/// value too large: nothing queued). Requests made before the probe answered wait in the codec
/// and are encoded when it does. The results come back as the waiter objects, in request
/// order, each with its `result` property set: the value, or an `Error` the server answered
/// with (`NotStored`, ...). A thrown error (a protocol violation, a timeout, a probe that says
/// the server cannot be used) means the connection failed: drop the socket and settle every
/// waiter [`Codec::drain`] returns.
#[wasm_bindgen]
pub struct Codec {
    /// The client's servers (protocol choice, key prefix, value limit, timeouts): the ops'
    /// context and the pipeline's settings come from it.
    cluster: Rc<Cluster>,
    pipe: Pipeline<Waiter>,
    /// Bytes to write.
    out: BytesMut,
    /// Requests made before the probe answered, with the time they were made.
    held: Vec<(Waiter, Duration)>,
}

fn ms(t: f64) -> Duration {
    Duration::from_secs_f64(t.max(0.0) / 1000.0)
}

impl Request {
    fn encode(&self, ctx: &ops::Ctx<'_>, out: &mut BytesMut) -> Result<Expect, Error> {
        match self {
            Request::Job { call, .. } => call.encode(ctx, out),
            Request::Version => ops::Version.encode(ctx, out),
            Request::Stats(group) => ops::Stats {
                group: group.as_deref(),
            }
            .encode(ctx, out),
            Request::FlushAll(delay) => ops::FlushAll { delay: *delay }.encode(ctx, out),
        }
    }
}

#[wasm_bindgen]
impl Codec {
    /// `meta` or `text`: what this connection speaks (`undefined` until the probe answered).
    #[wasm_bindgen(getter)]
    pub fn dialect(&self) -> Option<String> {
        self.pipe.dialect().map(|d| match d {
            Dialect::Meta => "meta".into(),
            Dialect::Text => "text".into(),
        })
    }

    /// The server's version, once the probe answered.
    #[wasm_bindgen(getter, js_name = serverVersion)]
    pub fn server_version(&self) -> Option<String> {
        self.pipe.version().map(str::to_string)
    }

    /// Requests queued and not yet answered (the probe included; requests waiting for it too).
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        (self.pipe.pending() + self.held.len()) as u32
    }

    /// Bytes received and not yet consumed by a complete reply.
    #[wasm_bindgen(getter)]
    pub fn buffered(&self) -> u32 {
        self.pipe.buffered() as u32
    }

    /// The bytes to write now, or `undefined` when there are none (call it once per turn of
    /// the event loop: requests made in the same turn leave in one write).
    pub fn transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            return None;
        }
        let bytes = self.out.to_vec();
        self.out.clear();
        Some(bytes)
    }

    /// Append bytes read from the socket, then [`Codec::poll`].
    pub fn receive(&mut self, chunk: &[u8]) -> Result<JsValue, JsValue> {
        self.pipe.feed(chunk);
        self.poll()
    }

    /// The next settled waiter, in request order, or `undefined` when the next reply is not
    /// complete yet; `true` when the probe answered (call [`Codec::ready`] then). Throws
    /// when the connection failed.
    pub fn poll(&mut self) -> Result<JsValue, JsValue> {
        match self.pipe.poll() {
            Ok(None) => Ok(JsValue::UNDEFINED),
            Ok(Some(Event::Ready)) => Ok(JsValue::TRUE),
            Ok(Some(Event::Reply(w, reply))) => {
                let result = self.finish(w.request, reply);
                settle(&w.waiter, &result);
                Ok(w.waiter)
            }
            Err(e) => Err(js::error(&e)),
        }
    }

    /// After the probe answered: the requests made while it was on its way are encoded and
    /// queued (send [`Codec::transmit`]'s bytes). Returns the waiters of those that could not
    /// be encoded for the server's dialect, each with its `result` set to the error.
    pub fn ready(&mut self) -> Array {
        let refused = Array::new();
        for (w, at) in std::mem::take(&mut self.held) {
            if let Err((w, e)) = self.queue(w, at) {
                settle(&w.waiter, &e);
                refused.push(&w.waiter);
            }
        }
        refused
    }

    /// At `now`: milliseconds until the oldest request is due (arm the timer for that), or
    /// `-1` when nothing waits. Throws a `Timeout` error when it is past due: the connection
    /// failed.
    pub fn check(&mut self, now: f64) -> Result<f64, JsValue> {
        match self.pipe.check(ms(now)) {
            Ok(Some(due)) => Ok((due.as_secs_f64() * 1000.0 - now).max(0.0)),
            Ok(None) => Ok(-1.0),
            Err(e) => Err(js::error(&e)),
        }
    }

    /// The socket broke with `error` (closed, reset): the connection's failure, as the core
    /// names it ([`Pipeline::lost`]). `link`: what the socket was, `plain`, `handshake` (TLS,
    /// the handshake not finished) or `tls`.
    pub fn lost(&mut self, error: &JsValue, link: &str) -> JsValue {
        let link = match link {
            "plain" => Link::Plain,
            "handshake" => Link::TlsHandshake,
            _ => Link::Tls,
        };
        js::error(&self.pipe.lost(js::error_from_js(error), link))
    }

    /// The connection failed (or is closed) with `error`: every waiter still waiting, oldest
    /// first, to settle with the error.
    pub fn drain(&mut self, error: &JsValue) -> Array {
        self.pipe.fail(js::error_from_js(error));
        let out = Array::new();
        for w in self.pipe.drain() {
            out.push(&w.waiter);
        }
        for (w, _) in self.held.drain(..) {
            out.push(&w.waiter);
        }
        out
    }

    /// Request `i` of `job` (a step machine's send step). Its result is `true` (the answer,
    /// a value or the server's refusal, is in the job for its next step) or, when the answer
    /// ends the job, the job's value (or its `Error`).
    pub fn call(
        &mut self,
        job: &mut crate::Job,
        i: u32,
        waiter: JsValue,
        now: f64,
    ) -> Result<(), JsValue> {
        let Some(call) = job.take_call(i) else {
            return Err(js::error(&Error::Client {
                server: self.pipe.server().to_string(),
                message: format!("the job has no request {i}"),
            }));
        };
        let slots = job.slots.clone();
        let request = Request::Job {
            call,
            slots,
            i: i as usize,
        };
        self.submit(request, waiter, now)
    }

    /// `version`: the server's version string.
    pub fn version(&mut self, waiter: JsValue, now: f64) -> Result<(), JsValue> {
        self.submit(Request::Version, waiter, now)
    }

    /// `stats [group]`: an object of name → value strings.
    pub fn stats(
        &mut self,
        group: Option<String>,
        waiter: JsValue,
        now: f64,
    ) -> Result<(), JsValue> {
        self.submit(Request::Stats(group), waiter, now)
    }

    /// `flush_all [delay]`: `true`.
    #[wasm_bindgen(js_name = flushAll)]
    pub fn flush_all(
        &mut self,
        delay: Option<u32>,
        waiter: JsValue,
        now: f64,
    ) -> Result<(), JsValue> {
        self.submit(Request::FlushAll(delay), waiter, now)
    }
}

impl Codec {
    /// A new connection to server `s` of `cluster`, opened at `now` (milliseconds): the probe
    /// is the first thing [`Codec::transmit`] returns.
    pub(crate) fn open(cluster: Rc<Cluster>, s: usize, now: f64) -> Codec {
        let mut out = BytesMut::with_capacity(4 * 1024);
        let pipe = Pipeline::open(cluster.pipeline_settings(s), ms(now), &mut out);
        Codec {
            cluster,
            pipe,
            out,
            held: Vec::new(),
        }
    }

    /// Queue a request, or hold it until the probe answered. Throws (nothing queued) when it
    /// cannot be sent.
    fn submit(&mut self, request: Request, waiter: JsValue, now: f64) -> Result<(), JsValue> {
        let w = Waiter { request, waiter };
        if self.pipe.dialect().is_none() && self.pipe.failure().is_none() {
            // Refuse now what no dialect could send (an invalid key, a value too large): the
            // caller hears it at once, as when the connection is ready.
            let dialect = match self.cluster.config().protocol {
                ProtocolChoice::Text => Dialect::Text,
                _ => Dialect::Meta,
            };
            let mut scratch = BytesMut::new();
            w.request
                .encode(&self.cluster.ctx(dialect), &mut scratch)
                .map_err(|e| js::error(&js::at_server(e, self.pipe.server())))?;
            self.held.push((w, ms(now)));
            return Ok(());
        }
        self.queue(w, ms(now)).map_err(|(_, e)| e)
    }

    fn queue(&mut self, w: Waiter, now: Duration) -> Result<(), (Waiter, JsValue)> {
        let Some(dialect) = self.pipe.dialect() else {
            let e = self
                .pipe
                .failure()
                .cloned()
                .unwrap_or_else(|| Error::Client {
                    server: self.pipe.server().to_string(),
                    message: "the connection is not ready".into(),
                });
            return Err((w, js::error(&e)));
        };
        let mark = self.out.len();
        let ctx = self.cluster.ctx(dialect);
        let expect = match w.request.encode(&ctx, &mut self.out) {
            Ok(x) => x,
            Err(e) => {
                self.out.truncate(mark);
                let e = js::error(&js::at_server(e, self.pipe.server()));
                return Err((w, e));
            }
        };
        self.pipe.push(expect, w, now).map_err(|w| {
            self.out.truncate(mark);
            let e = self
                .pipe
                .failure()
                .cloned()
                .expect("a failed pipeline says why");
            (w, js::error(&e))
        })
    }

    /// A request's error, named by this server; a protocol error fails the connection.
    fn failed(&mut self, e: Error) -> Error {
        if let Error::Protocol { detail, .. } = &e {
            return self.pipe.out_of_step(detail.clone());
        }
        js::at_server(e, self.pipe.server())
    }

    fn err(&mut self, e: Error) -> JsValue {
        let e = self.failed(e);
        js::error(&e)
    }

    /// What a reply means for its request. A reply that does not answer it (another key's
    /// value, a stray token) is that request's error and fails the connection: the next
    /// [`Codec::poll`] throws, and no later reply on it is trusted.
    fn finish(&mut self, request: Request, reply: Reply) -> JsValue {
        let dialect = self.pipe.dialect().expect("replies come after the probe");
        let ctx = self.cluster.ctx(dialect);
        match request {
            Request::Job { call, slots, i } => {
                let r = call.finish(&ctx, reply).map_err(|e| self.failed(e));
                crate::job::answer(&slots, i, r)
            }
            Request::Version => match ops::Version.finish(&ctx, reply) {
                Ok(v) => JsValue::from_str(&v),
                Err(e) => self.err(e),
            },
            Request::Stats(_) => match (ops::Stats { group: None }).finish(&ctx, reply) {
                Ok(stats) => {
                    let o = Object::new();
                    for (k, v) in stats {
                        js::set(&o, &k, v);
                    }
                    o.into()
                }
                Err(e) => self.err(e),
            },
            Request::FlushAll(_) => match (ops::FlushAll { delay: None }).finish(&ctx, reply) {
                Ok(()) => JsValue::TRUE,
                Err(e) => self.err(e),
            },
        }
    }
}

/// Split packed keys: `ends[i]` is the end of key `i` in `keys`.
pub(crate) fn unpack<'a>(keys: &'a [u8], ends: &[u32]) -> Result<Vec<&'a [u8]>, JsValue> {
    let mut start = 0usize;
    ends.iter()
        .map(|&e| {
            let e = e as usize;
            if e < start || e > keys.len() {
                return Err(js::error(&Error::Config(
                    "packed keys: ends must grow and stay within the bytes".into(),
                )));
            }
            let k = &keys[start..e];
            start = e;
            Ok(k)
        })
        .collect()
}
