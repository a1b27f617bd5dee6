//! One connection's codec: requests encoded by the core's ops, replies decoded by the core's
//! `protocol::Decoder` and interpreted by the same ops' `finish`. JavaScript writes the bytes
//! [`Codec`] returns and feeds it the bytes the socket reads; replies come back in request
//! order (memcached answers in order on a connection), already meaning what they mean in Rust.

use std::collections::VecDeque;

use bytes::BytesMut;
use js_sys::{Array, Object};
use multiput::cluster::Cluster;
use multiput::machine::Item;
use multiput::ops::{self, Op, Value};
use multiput::protocol::text::StoreMode;
use multiput::protocol::{Decoder, Dialect, Expect, Limits, Reply};
use multiput::values::Convention;
use multiput::{Config, Error, ProtocolChoice, ServerSpec};
use wasm_bindgen::prelude::*;

use crate::js;
use crate::values;

/// How a read hands its values to JavaScript.
#[derive(Debug, Clone, Copy)]
enum Out {
    /// `{data, flags, cas, ttl}`: the stored bytes, for replication to resolve.
    Raw,
    /// The typed value (envelope-aware, plain values by the convention's flags); with `cas`,
    /// `{value, cas}`.
    Typed,
}

/// A request on the wire, waiting for its reply.
#[derive(Debug)]
enum Pending {
    Probe,
    // Single-key ops keep their key: `finish` proves the reply answers it.
    Get {
        key: Vec<u8>,
        cas: bool,
        out: Out,
    },
    Store(Vec<u8>),
    Delete(Vec<u8>),
    Arith(Vec<u8>),
    Touch(Vec<u8>),
    GetMulti {
        keys: Vec<Vec<u8>>,
        cas: bool,
        ttl: bool,
        out: Out,
    },
    StoreItems(Vec<Item>),
    DeleteMulti(usize),
    Version,
    Stats,
    FlushAll,
    /// Request `i` of a [`crate::Job`]: its answer goes into the job's slot.
    Call {
        call: multiput::machine::Call,
        slots: crate::job::Slots,
        i: usize,
    },
}

/// The codec of one connection (create one per socket; drop it with the socket).
///
/// Every encoding method returns the request's bytes and queues its decoder; nothing is queued
/// when it throws (invalid key, value too large). After writing, call [`Codec::feed`] with each
/// chunk the socket delivers, then [`Codec::poll`] until it returns `undefined`: each other
/// return is the next request's result, in request order. A result that is an `Error` is the
/// server's answer (e.g. `NotStored`); a thrown error is a protocol violation: drop the
/// connection.
#[wasm_bindgen]
pub struct Codec {
    server: String,
    dialect: Dialect,
    /// The core's view of this one server (protocol choice, key prefix, value limit): the
    /// probe, its decision and the ops' context come from it.
    cluster: Cluster,
    limits: Limits,
    convention: Convention,
    buf: BytesMut,
    out: BytesMut,
    pending: VecDeque<(Decoder, Pending)>,
    /// Set when a reply did not answer its request (another key's value, a stray token):
    /// `poll` then throws, so the connection is dropped, never reused out of step.
    out_of_step: std::cell::Cell<Option<String>>,
}

/// `auto` (or empty: probe, meta when the server speaks it), `text` or `meta`.
pub(crate) fn protocol_choice(protocol: &str) -> Result<ProtocolChoice, JsValue> {
    match protocol {
        "auto" | "" => Ok(ProtocolChoice::Auto),
        "text" => Ok(ProtocolChoice::Text),
        "meta" => Ok(ProtocolChoice::Meta),
        p => Err(js::error(&Error::Config(format!(
            "unknown protocol {p:?} (auto, text or meta)"
        )))),
    }
}

fn store_mode(mode: &str, cas: Option<u64>) -> Result<StoreMode, JsValue> {
    Ok(match (mode, cas) {
        ("set", _) => StoreMode::Set,
        ("add", _) => StoreMode::Add,
        ("replace", _) => StoreMode::Replace,
        ("append", _) => StoreMode::Append,
        ("prepend", _) => StoreMode::Prepend,
        ("cas", Some(c)) => StoreMode::Cas(c),
        _ => {
            return Err(js::error(&Error::Config(format!(
                "unknown store mode {mode:?} (set, add, replace, append, prepend, or cas with a unique)"
            ))))
        }
    })
}

fn key_list(keys: &Array) -> Result<Vec<Vec<u8>>, JsValue> {
    keys.iter()
        .map(|k| {
            js::bytes_of(&k).ok_or_else(|| {
                js::error(&Error::Config("keys must be strings or Uint8Arrays".into()))
            })
        })
        .collect()
}

fn raw_value(v: &Value) -> JsValue {
    let o = Object::new();
    js::set(&o, "data", js::u8a(&v.data));
    js::set(&o, "flags", v.flags);
    if let Some(c) = v.cas {
        js::set(&o, "cas", js::big(c));
    }
    if let Some(t) = v.ttl {
        js::set(&o, "ttl", t as f64);
    }
    o.into()
}

#[wasm_bindgen]
impl Codec {
    /// A codec for a connection to `server` (`host:port`, used in error messages).
    /// `protocol`: `auto` (probe; meta when the server speaks it), `text` or `meta`.
    /// `convention`: how plain values' flags are read (`python` or `php`).
    /// `binary_keys`: keys outside the text rules go base64-encoded over meta.
    #[wasm_bindgen(constructor)]
    pub fn new(
        server: &str,
        key_prefix: &[u8],
        max_value_size: u32,
        protocol: &str,
        convention: &str,
        binary_keys: Option<bool>,
    ) -> Result<Codec, JsValue> {
        let protocol = protocol_choice(protocol)?;
        // The server's name only labels errors (JS passes the Core's `address(i)`, which
        // parses back to the same spec); a name that does not parse still gets a codec.
        let spec = server
            .parse()
            .unwrap_or_else(|_| ServerSpec::new(server, 0));
        let cluster = Cluster::new(Config {
            servers: vec![spec],
            protocol,
            key_prefix: key_prefix.to_vec(),
            max_value_size: max_value_size as usize,
            binary_keys: binary_keys.unwrap_or(false),
            ..Config::default()
        })
        .map_err(|e| js::error(&e))?;
        Ok(Codec {
            server: server.to_string(),
            dialect: Dialect::Text,
            cluster,
            limits: Limits {
                max_value_size: max_value_size as usize,
                ..Limits::default()
            },
            convention: values::convention(&JsValue::from_str(convention))?,
            buf: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::with_capacity(4 * 1024),
            pending: VecDeque::new(),
            out_of_step: std::cell::Cell::new(None),
        })
    }

    /// `meta` or `text`: what this connection speaks (`text` until the probe answered).
    #[wasm_bindgen(getter)]
    pub fn dialect(&self) -> String {
        match self.dialect {
            Dialect::Meta => "meta".into(),
            Dialect::Text => "text".into(),
        }
    }

    /// Requests written and not yet answered.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        self.pending.len() as u32
    }

    /// Bytes received and not yet consumed by a complete reply.
    #[wasm_bindgen(getter)]
    pub fn buffered(&self) -> u32 {
        self.buf.len() as u32
    }

    fn emit<O: Op>(&mut self, op: &O, pending: Pending) -> Result<Vec<u8>, JsValue> {
        self.out.clear();
        let ctx = self.cluster.ctx(self.dialect);
        let expect = op.encode(&ctx, &mut self.out).map_err(|e| js::error(&e))?;
        self.push(expect, pending);
        Ok(self.out.to_vec())
    }

    fn push(&mut self, expect: Expect, pending: Pending) {
        self.pending
            .push_back((Decoder::new(expect, self.limits), pending));
    }

    /// Request `i` of `job` (a step machine's send step). The result is `true`: the answer
    /// (a value, or the server's refusal) is in the job, for its next step; or, when the
    /// answer ends the job, the job's value (or its `Error`).
    pub fn call(&mut self, job: &mut crate::Job, i: u32) -> Result<Vec<u8>, JsValue> {
        let Some(call) = job.take_call(i) else {
            return Err(js::error(&Error::Client {
                server: self.server.clone(),
                message: format!("the job has no request {i}"),
            }));
        };
        self.out.clear();
        let ctx = self.cluster.ctx(self.dialect);
        let expect = call
            .encode(&ctx, &mut self.out)
            .map_err(|e| js::error(&e))?;
        let slots = job.slots.clone();
        let i = i as usize;
        self.push(expect, Pending::Call { call, slots, i });
        Ok(self.out.to_vec())
    }

    /// The connection probe, sent first on every new connection: `version` then `mn` (unless
    /// the protocol is forced to text). Its result is `{version, dialect}`.
    pub fn probe(&mut self) -> Vec<u8> {
        self.out.clear();
        let expect = self.cluster.probe(&mut self.out);
        self.push(expect, Pending::Probe);
        self.out.to_vec()
    }

    /// `get`/`gets`/`gat`: with `typed`, the result is the typed value (`null` on a miss or a
    /// tombstone; `{value, cas}` with `cas`); otherwise `{data, flags, cas?}` or `null`.
    pub fn get(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<u32>,
        typed: bool,
    ) -> Result<Vec<u8>, JsValue> {
        let out = if typed { Out::Typed } else { Out::Raw };
        let pending = Pending::Get {
            key: key.to_vec(),
            cas,
            out,
        };
        self.emit(&ops::Get { key, cas, touch }, pending)
    }

    /// A store of raw bytes with `flags`: `mode` is `set`, `add`, `replace`, `append`,
    /// `prepend` or `cas` (with `cas`). Result `true`, or `NotStored`/`Exists`/`NotFound`.
    pub fn store(
        &mut self,
        mode: &str,
        key: &[u8],
        data: &[u8],
        flags: u32,
        ttl: u32,
        cas: Option<u64>,
    ) -> Result<Vec<u8>, JsValue> {
        let mode = store_mode(mode, cas)?;
        self.emit(
            &ops::Store {
                mode,
                key,
                data,
                flags,
                ttl,
            },
            Pending::Store(key.to_vec()),
        )
    }

    /// A store of a JavaScript value as a plain client of the codec's convention writes it
    /// (see the crate docs for the flags).
    #[wasm_bindgen(js_name = storeValue)]
    pub fn store_value(
        &mut self,
        mode: &str,
        key: &[u8],
        value: &JsValue,
        ttl: u32,
        cas: Option<u64>,
    ) -> Result<Vec<u8>, JsValue> {
        let (data, flags) = values::plain_from_js(self.convention, value)?;
        self.store(mode, key, &data, flags, ttl, cas)
    }

    /// `delete`: result `true` when the key existed, `false` when not.
    pub fn delete(&mut self, key: &[u8]) -> Result<Vec<u8>, JsValue> {
        self.emit(&ops::Delete { key }, Pending::Delete(key.to_vec()))
    }

    /// `incr`/`decr` by `delta` (a number or a `BigInt`): the new value (a number, or a
    /// `BigInt` past 2^53), or `null` when the key is missing.
    pub fn arith(&mut self, key: &[u8], incr: bool, delta: &JsValue) -> Result<Vec<u8>, JsValue> {
        let delta = js::u64_of(delta).ok_or_else(|| {
            js::error(&Error::Config(
                "delta must be a non-negative integer (number or bigint)".into(),
            ))
        })?;
        self.emit(
            &ops::Arith { key, incr, delta },
            Pending::Arith(key.to_vec()),
        )
    }

    /// `touch`: `true` when the key existed.
    pub fn touch(&mut self, key: &[u8], ttl: u32) -> Result<Vec<u8>, JsValue> {
        self.emit(&ops::Touch { key, ttl }, Pending::Touch(key.to_vec()))
    }

    /// A multi-get of keys that all live on this connection's server. The result is an array
    /// aligned with `keys`: `null` for a miss, else as [`Codec::get`] (`ttl` asks for the
    /// remaining TTL, meta protocol only; replication's repairs need it).
    #[wasm_bindgen(js_name = getMulti)]
    pub fn get_multi(
        &mut self,
        keys: &Array,
        cas: bool,
        ttl: bool,
        typed: bool,
    ) -> Result<Vec<u8>, JsValue> {
        let keys = key_list(keys)?;
        let out = if typed { Out::Typed } else { Out::Raw };
        self.out.clear();
        let ctx = self.cluster.ctx(self.dialect);
        let expect = ops::GetMulti {
            keys: &keys,
            cas,
            ttl,
        }
        .encode(&ctx, &mut self.out)
        .map_err(|e| js::error(&e))?;
        self.push(
            expect,
            Pending::GetMulti {
                keys,
                cas,
                ttl,
                out,
            },
        );
        Ok(self.out.to_vec())
    }

    /// Many plain stores of JavaScript values (`[key, value]` pairs) with one mode and TTL,
    /// typed by the convention as [`Codec::store_value`]. Result as [`Codec::store_items`].
    #[wasm_bindgen(js_name = storeValues)]
    pub fn store_values(
        &mut self,
        pairs: &Array,
        mode: &str,
        ttl: u32,
    ) -> Result<Vec<u8>, JsValue> {
        let mode = store_mode(mode, None)?;
        let mut owned = Vec::with_capacity(pairs.length() as usize);
        for p in pairs.iter() {
            let p: Array = p.dyn_into().map_err(|_| bad_item())?;
            let key = js::bytes_of(&p.get(0)).ok_or_else(bad_item)?;
            let (data, flags) = values::plain_from_js(self.convention, &p.get(1))?;
            owned.push(Item {
                key: key.into(),
                data: data.into(),
                mode,
                flags,
                ttl,
            });
        }
        self.store_owned(owned)
    }

    fn store_owned(&mut self, items: Vec<Item>) -> Result<Vec<u8>, JsValue> {
        self.out.clear();
        let ctx = self.cluster.ctx(self.dialect);
        let expect = ops::StoreItems { items: &items }
            .encode(&ctx, &mut self.out)
            .map_err(|e| js::error(&e))?;
        self.push(expect, Pending::StoreItems(items));
        Ok(self.out.to_vec())
    }

    /// Many deletes pipelined; the result is an array of `true` (existed) / `false` / error.
    #[wasm_bindgen(js_name = deleteMulti)]
    pub fn delete_multi(&mut self, keys: &Array) -> Result<Vec<u8>, JsValue> {
        let keys = key_list(keys)?;
        let n = keys.len();
        self.emit(&ops::DeleteMulti { keys: &keys }, Pending::DeleteMulti(n))
    }

    /// `version`: the server's version string.
    pub fn version(&mut self) -> Result<Vec<u8>, JsValue> {
        self.emit(&ops::Version, Pending::Version)
    }

    /// `stats [group]`: an object of name → value strings.
    pub fn stats(&mut self, group: Option<String>) -> Result<Vec<u8>, JsValue> {
        self.emit(
            &ops::Stats {
                group: group.as_deref(),
            },
            Pending::Stats,
        )
    }

    /// `flush_all [delay]`: `true`.
    #[wasm_bindgen(js_name = flushAll)]
    pub fn flush_all(&mut self, delay: Option<u32>) -> Result<Vec<u8>, JsValue> {
        self.emit(&ops::FlushAll { delay }, Pending::FlushAll)
    }

    /// Append bytes read from the socket.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// [`Codec::feed`] then [`Codec::poll`] in one call (one crossing per read for the common
    /// one-reply chunk); call `poll` for more results only when this returned one.
    pub fn receive(&mut self, chunk: &[u8]) -> Result<JsValue, JsValue> {
        self.buf.extend_from_slice(chunk);
        self.poll()
    }

    /// The next complete result, in request order, or `undefined` when the next reply is not
    /// complete yet. Throws a `Protocol` error when the server sent something that is not
    /// memcached protocol (or bytes nobody asked for): drop the connection then.
    pub fn poll(&mut self) -> Result<JsValue, JsValue> {
        let Some((decoder, _)) = self.pending.front_mut() else {
            if self.buf.is_empty() {
                return Ok(JsValue::UNDEFINED);
            }
            return Err(self.protocol_error(format!(
                "{} bytes arrived that no request asked for: {:?}",
                self.buf.len(),
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(64)])
            )));
        };
        let reply = match decoder.decode(&mut self.buf) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(JsValue::UNDEFINED),
            Err(e) => return Err(self.protocol_error(e.0)),
        };
        let (_, pending) = self.pending.pop_front().expect("front exists");
        let result = self.finish(pending, reply);
        if let Some(detail) = self.out_of_step.take() {
            return Err(self.protocol_error(detail));
        }
        result
    }

    fn protocol_error(&self, detail: String) -> JsValue {
        js::error(&Error::Protocol {
            server: self.server.clone(),
            detail,
        })
    }

    fn err(&self, e: Error) -> JsValue {
        if let Error::Protocol { detail, .. } = &e {
            self.out_of_step.set(Some(detail.clone()));
        }
        js::error(&js::at_server(e, &self.server))
    }

    fn result<T>(&self, r: Result<T, Error>, ok: impl FnOnce(T) -> JsValue) -> JsValue {
        match r {
            Ok(v) => ok(v),
            Err(e) => self.err(e),
        }
    }

    fn read_value(&self, v: Option<Value>, cas: bool, out: Out) -> Result<JsValue, JsValue> {
        let Some(v) = v else { return Ok(JsValue::NULL) };
        match out {
            Out::Raw => Ok(raw_value(&v)),
            Out::Typed => {
                let Some(value) = values::stored_to_js(self.convention, &v.data, v.flags)? else {
                    return Ok(JsValue::NULL);
                };
                if !cas {
                    return Ok(value);
                }
                let o = Object::new();
                js::set(&o, "value", value);
                js::set(&o, "cas", v.cas.map(js::big).unwrap_or(JsValue::UNDEFINED));
                Ok(o.into())
            }
        }
    }

    fn finish(&mut self, pending: Pending, reply: Reply) -> Result<JsValue, JsValue> {
        let ctx = self.cluster.ctx(self.dialect);
        let mode = StoreMode::Set;
        Ok(match pending {
            Pending::Probe => return self.probe_result(reply),
            Pending::Call { call, slots, i } => {
                let r = call.finish(&ctx, reply).map_err(|e| {
                    if let Error::Protocol { detail, .. } = &e {
                        self.out_of_step.set(Some(detail.clone()));
                    }
                    js::at_server(e, &self.server)
                });
                crate::job::answer(&slots, i, r)
            }
            Pending::Get { key, cas, out } => match (ops::Get {
                key: &key,
                cas,
                touch: None,
            })
            .finish(&ctx, reply)
            {
                Ok(v) => self.read_value(v, cas, out).unwrap_or_else(|e| e),
                Err(e) => self.err(e),
            },
            Pending::Store(key) => {
                let r = ops::Store {
                    mode,
                    key: &key,
                    data: b"",
                    flags: 0,
                    ttl: 0,
                }
                .finish(&ctx, reply);
                self.result(r, |()| JsValue::TRUE)
            }
            Pending::Delete(key) => {
                let r = ops::Delete { key: &key }.finish(&ctx, reply);
                self.result(r, JsValue::from_bool)
            }
            Pending::Arith(key) => {
                let r = ops::Arith {
                    key: &key,
                    incr: true,
                    delta: 0,
                }
                .finish(&ctx, reply);
                self.result(r, |v| v.map(js::uint).unwrap_or(JsValue::NULL))
            }
            Pending::Touch(key) => {
                let r = ops::Touch { key: &key, ttl: 0 }.finish(&ctx, reply);
                self.result(r, JsValue::from_bool)
            }
            Pending::GetMulti {
                keys,
                cas,
                ttl,
                out,
            } => {
                match (ops::GetMulti {
                    keys: &keys,
                    cas,
                    ttl,
                })
                .finish(&ctx, reply)
                {
                    Ok(vals) => {
                        let arr = Array::new_with_length(vals.len() as u32);
                        for (i, v) in vals.into_iter().enumerate() {
                            // A value JavaScript cannot read is that key's error, not the batch's.
                            arr.set(i as u32, self.read_value(v, cas, out).unwrap_or_else(|e| e));
                        }
                        arr.into()
                    }
                    Err(e) => self.err(e),
                }
            }
            Pending::StoreItems(items) => {
                match (ops::StoreItems { items: &items }).finish(&ctx, reply) {
                    Ok(rs) => rs
                        .into_iter()
                        .map(|r| self.result(r, |()| JsValue::TRUE))
                        .collect::<Array>()
                        .into(),
                    Err(e) => self.err(e),
                }
            }
            Pending::DeleteMulti(n) => {
                let keys = vec![&b""[..]; n];
                match (ops::DeleteMulti { keys: &keys }).finish(&ctx, reply) {
                    Ok(rs) => rs
                        .into_iter()
                        .map(|r| self.result(r, JsValue::from_bool))
                        .collect::<Array>()
                        .into(),
                    Err(e) => self.err(e),
                }
            }
            Pending::Version => {
                let r = ops::Version.finish(&ctx, reply);
                self.result(r, |v| JsValue::from_str(&v))
            }
            Pending::Stats => {
                let r = ops::Stats { group: None }.finish(&ctx, reply);
                self.result(r, |stats| {
                    let o = Object::new();
                    for (k, v) in stats {
                        js::set(&o, &k, v);
                    }
                    o.into()
                })
            }
            Pending::FlushAll => {
                let r = ops::FlushAll { delay: None }.finish(&ctx, reply);
                self.result(r, |()| JsValue::TRUE)
            }
        })
    }

    /// The probe's reply: `VERSION ...` then `MN` (meta spoken) or `ERROR` (text only),
    /// decided by the core's `Cluster::probe_result`.
    fn probe_result(&mut self, reply: Reply) -> Result<JsValue, JsValue> {
        let (dialect, version) = self.cluster.probe_result(0, reply).map_err(|mut e| {
            // Named as JavaScript named the server, like every other error of this codec.
            if let Error::Protocol { server, .. } | Error::Unsupported { server, .. } = &mut e {
                server.clone_from(&self.server);
            }
            js::error(&e)
        })?;
        self.dialect = dialect;
        let o = Object::new();
        js::set(&o, "version", version);
        js::set(&o, "dialect", self.dialect());
        Ok(o.into())
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

fn bad_item() -> JsValue {
    js::error(&Error::Config(
        "each item must be an array [key, data, flags, ttl, mode?, cas?] with a string or Uint8Array key and data".into(),
    ))
}
