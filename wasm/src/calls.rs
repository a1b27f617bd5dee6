//! The client's calls as jobs, in either mode. Each method installs the call's machine in a
//! [`Job`] whether the core is plain or replicated, and the core picks the machine: a plain
//! call is one request to the key's owner ([`Single`]) or one per server ([`Each`]); a
//! replicated one is the core's replicated read, write or read-modify-write. So the JavaScript
//! client has one path per call and never asks which mode it is in: it translates arguments,
//! runs the job and maps its value.
//!
//! Each method returns the job's first step (see `job.rs`): plain calls are one-shot machines,
//! started at once, whose last answer the codec turns straight into the call's value.

use bytes::Bytes;
use js_sys::Array;
use multiput::envelope::{Format, Kind, Typed, ValueType};
use multiput::machine::counter::IncrInitial;
use multiput::machine::plain::{Deletes, Each, Gets, Single, Stores};
use multiput::machine::replicated::{Cas, Put, Read, Rule, Updated, Write};
use multiput::machine::{Answer, Call, Item};
use multiput::ops::Value;
use multiput::protocol::text::StoreMode;
use multiput::recipes::CasOptions;
use multiput::replication::{Versioned, WriteReport};
use multiput::values as core_values;
use multiput::Error;
use wasm_bindgen::prelude::*;

use crate::core::{config, Core};
use crate::job::{self, Job, Outcome};
use crate::packed::Packed;
use crate::{codec, js, values};

/// The plain bytes and flags of a JavaScript value (the core's convention).
fn plain(core: &Core, value: &JsValue) -> Result<(Bytes, u32), JsValue> {
    let (data, flags) = values::plain_from_js(core.convention, value)?;
    Ok((data.into(), flags))
}

/// A replicated write of one key: its report, or why the policy was not met.
fn one_report(rs: Vec<Result<WriteReport, Error>>) -> Result<WriteReport, JsValue> {
    match rs.into_iter().next() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(js::error(&e)),
        None => Err(config("a write of one key ended without its report")),
    }
}

/// A job done with `true`.
fn done<T>(_: T) -> Outcome {
    Ok(JsValue::TRUE)
}

fn no_view<T>(_: &T) -> JsValue {
    JsValue::NULL
}

/// The answer of a plain single call, when it is of the kind `f` takes.
fn answer<T>(
    r: (usize, Answer),
    f: impl FnOnce(Result<Answer, Error>) -> Result<T, Error>,
) -> Result<T, JsValue> {
    f(Ok(r.1)).map_err(|e| js::error(&e))
}

/// A counter's value: a number, a `BigInt` past 2^53, or `null` (missing).
fn number(n: Option<u64>) -> Outcome {
    Ok(n.map_or(JsValue::NULL, js::uint))
}

impl Core {
    fn single(
        &self,
        job: &mut Job,
        call: Call,
        out: impl Fn((usize, Answer)) -> Outcome + 'static,
    ) -> u32 {
        job.install_oneshot(self.jobs(), Single::new(call), out)
    }

    /// A replicated read-modify-write of `key` by `rule` (stored with `ttl`).
    fn update(
        &self,
        job: &mut Job,
        key: &[u8],
        rule: Rule,
        ttl: u32,
        seed: f64,
        out: impl Fn(Updated) -> Outcome + 'static,
    ) -> u32 {
        let opts = CasOptions {
            ttl,
            ..Default::default()
        };
        let m = Cas::new(self.rep(), key, rule, opts, seed as u64);
        job.install(self.jobs(), m, out, no_view)
    }

    /// A replicated write of `keys` with `values` (typed JavaScript values), or tombstones
    /// when `values` is `None`. Values that cannot be typed are refused per key, before anything
    /// is sent: `refused` says which.
    fn replicated_write(
        &self,
        keys: Vec<Vec<u8>>,
        values: Option<&Array>,
        ttl: u32,
    ) -> (Write, Vec<Option<JsValue>>) {
        let mut refused = Vec::with_capacity(keys.len());
        let mut puts = Vec::with_capacity(keys.len());
        for (i, k) in keys.into_iter().enumerate() {
            let (value_type, format, payload) = match values {
                None => (ValueType::Bytes, Format::NONE, Vec::new()),
                Some(v) => match values::typed_from_js(&v.get(i as u32)) {
                    Ok(t) => (t.vtype(), t.format(), t.encode_payload()),
                    Err(e) => {
                        refused.push(Some(e));
                        continue;
                    }
                },
            };
            refused.push(None);
            puts.push(Put {
                key: k.into(),
                kind: if values.is_none() {
                    Kind::Tombstone
                } else {
                    Kind::Value
                },
                value_type,
                format,
                payload: payload.into(),
            });
        }
        let (op, ttl) = match values {
            None => ("delete", self.policy.tombstone_ttl),
            Some(_) => ("write", ttl),
        };
        (Write::new(self.rep(), op, puts, ttl), refused)
    }

    fn set_typed(&self, job: &mut Job, key: Vec<u8>, t: Typed, ttl: u32) -> u32 {
        let put = Put {
            key: key.into(),
            kind: Kind::Value,
            value_type: t.vtype(),
            format: t.format(),
            payload: t.encode_payload().into(),
        };
        let m = Write::new(self.rep(), "write", vec![put], ttl);
        let out = |rs| Ok(job::report_js(&one_report(rs)?));
        job.install(self.jobs(), m, out, no_view)
    }

    fn set_plain(&self, job: &mut Job, key: Vec<u8>, data: Bytes, flags: u32, ttl: u32) -> u32 {
        let item = Item {
            key: key.into(),
            data,
            mode: StoreMode::Set,
            flags,
            ttl,
        };
        let stored_on = self.stored_on.clone();
        self.single(job, Call::Store(item), move |(s, _)| {
            Ok(stored_on.get(s).cloned().unwrap_or(JsValue::NULL))
        })
    }
}

#[wasm_bindgen]
impl Core {
    /// Read `key`. Done with its value or `null` (a miss; replicated: also a deleted key); with
    /// `versions`, `{value, cas}`, where `cas` is the CAS unique (replicated: the value's
    /// version token) for a `cas` store. Replicated reads take the latest copy and repair the
    /// others.
    pub fn get(&self, job: &mut Job, key: Vec<u8>, versions: bool) -> u32 {
        let conv = self.convention;
        let with = move |v: JsValue, cas: Option<u64>| -> JsValue {
            if versions && !v.is_null() {
                job::with_cas(v, cas)
            } else {
                v
            }
        };
        if self.replicated {
            let m = Read::new(self.rep(), &[key]);
            let out = move |rs: Vec<Result<Option<Versioned>, Error>>| match rs.into_iter().next() {
                Some(Ok(Some(v))) => Ok(with(
                    job::versioned_value(conv, &v)?,
                    Some(v.version_token()),
                )),
                Some(Ok(None)) | None => Ok(JsValue::NULL),
                Some(Err(e)) => Err(js::error(&e)),
            };
            return job.install(self.jobs(), m, out, no_view);
        }
        let call = Call::Get {
            key: key.into(),
            cas: versions,
        };
        self.single(job, call, move |r| match answer(r, Answer::into_value)? {
            Some(v) => Ok(with(job::plain_value(conv, &v)?, v.cas)),
            None => Ok(JsValue::NULL),
        })
    }

    /// Store `value` under `key` with `ttl`. Done with the write report as `[stored,
    /// failed]` (plain: the key's server); fails when it was not stored (replicated: when the
    /// write policy was not met).
    pub fn set(
        &self,
        job: &mut Job,
        key: Vec<u8>,
        value: &JsValue,
        ttl: u32,
    ) -> Result<u32, JsValue> {
        if self.replicated {
            let t = values::typed_from_js(value)?;
            return Ok(self.set_typed(job, key, t, ttl));
        }
        let (data, flags) = plain(self, value)?;
        Ok(self.set_plain(job, key, data, flags, ttl))
    }

    /// [`Core::set`] of bytes (a `Uint8Array` value, passed as bytes: no asking JavaScript
    /// what type it is).
    #[wasm_bindgen(js_name = setBytes)]
    pub fn set_bytes(&self, job: &mut Job, key: Vec<u8>, data: Vec<u8>, ttl: u32) -> u32 {
        if self.replicated {
            return self.set_typed(job, key, Typed::Bytes(data), ttl);
        }
        // Bytes are stored as they are, with flags 0, under every convention (`values.rs`).
        self.set_plain(job, key, data.into(), 0, ttl)
    }

    /// A conditional store of `value` under `key`: `mode` is `add` (only if missing),
    /// `replace` (only if present), `append`/`prepend` (bytes or text to a present value) or
    /// `cas` (only if `cas` is still the key's CAS unique; replicated: its version token).
    /// Done with `true`; fails with `NotStored`, `Exists` or `NotFound`. Replicated keys follow
    /// the same conditions, serialized by CAS on the key's primary replica (`seed`: its
    /// backoff's jitter).
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        job: &mut Job,
        mode: &str,
        key: Vec<u8>,
        value: &JsValue,
        ttl: u32,
        cas: &JsValue,
        seed: f64,
    ) -> Result<u32, JsValue> {
        if self.replicated {
            let typed = || values::typed_from_js(value);
            let rule = match mode {
                "add" | "replace" => {
                    let t = typed()?;
                    let (vt, f, p) = (t.vtype(), t.format(), t.encode_payload().into());
                    if mode == "add" {
                        Rule::Add(vt, f, p)
                    } else {
                        Rule::Replace(vt, f, p)
                    }
                }
                "append" | "prepend" => Rule::Append {
                    data: match typed()? {
                        Typed::Bytes(b) => b.into(),
                        Typed::Text(s) => s.into_bytes().into(),
                        _ => return Err(config("append/prepend takes a string or bytes")),
                    },
                    prepend: mode == "prepend",
                },
                "cas" => {
                    let t = typed()?;
                    let version = js::u64_of(cas)
                        .ok_or_else(|| config("cas needs the version token from gets"))?;
                    Rule::IfVersion(version, t.vtype(), t.format(), t.encode_payload().into())
                }
                m => return Err(config(format!("unknown store mode {m:?}"))),
            };
            return Ok(self.update(job, &key, rule, ttl, seed, done));
        }
        let mode = match (mode, js::u64_of(cas)) {
            ("add", _) => StoreMode::Add,
            ("replace", _) => StoreMode::Replace,
            ("append", _) => StoreMode::Append,
            ("prepend", _) => StoreMode::Prepend,
            ("cas", Some(c)) => StoreMode::Cas(c),
            ("cas", None) => return Err(config("cas needs the CAS unique from gets")),
            (m, _) => return Err(config(format!("unknown store mode {m:?}"))),
        };
        let (data, flags) = plain(self, value)?;
        let item = Item {
            key: key.into(),
            data,
            mode,
            flags,
            ttl,
        };
        Ok(self.single(job, Call::Store(item), done))
    }

    /// Delete `key`. Done with whether it existed (replicated: tombstones are written to
    /// every replica, and `true` once the write policy was met).
    pub fn delete(&self, job: &mut Job, key: Vec<u8>) -> u32 {
        if self.replicated {
            let (m, _) = self.replicated_write(vec![key], None, 0);
            let out = |rs| one_report(rs).map(|_| JsValue::TRUE);
            return job.install(self.jobs(), m, out, no_view);
        }
        let key = key.into();
        self.single(job, Call::Delete { key }, |r| {
            answer(r, Answer::into_existed).map(JsValue::from_bool)
        })
    }

    /// Add (`incr`) or subtract `delta` (a number or `BigInt`) to the counter `key`; when it
    /// is missing and `initial` is given, create it at `initial` with `ttl`. Done with the new
    /// value (a number, or a `BigInt` past 2^53), or `null` (missing, no initial). Plain:
    /// memcached's `incr`/`decr` (`decr` stops at 0); replicated: the core's exact counter, a
    /// read-modify-write serialized by CAS on the primary (`seed`: its backoff's jitter).
    #[allow(clippy::too_many_arguments)]
    pub fn arith(
        &self,
        job: &mut Job,
        key: &[u8],
        incr: bool,
        delta: &JsValue,
        initial: &JsValue,
        ttl: u32,
        seed: f64,
    ) -> Result<u32, JsValue> {
        let initial = js::u64_of(initial);
        if self.replicated {
            // The exact counter adds any signed amount (a number, or a BigInt within i64).
            let delta = match delta.as_f64() {
                Some(n) => n as i64,
                None => i64::try_from(delta.clone())
                    .map_err(|_| config("delta must be a number or a bigint within i64"))?,
            };
            let rule = Rule::Incr {
                delta: if incr { delta } else { delta.saturating_neg() },
                initial,
            };
            return Ok(self.update(job, key, rule, ttl, seed, |u| number(u.number)));
        }
        let delta = js::u64_of(delta)
            .ok_or_else(|| config("delta must be a non-negative integer (number or bigint)"))?;
        let m = IncrInitial::new(key, incr, delta, initial, ttl);
        Ok(job.install(self.jobs(), m, number, no_view))
    }

    /// Give `key` a new TTL. Done with whether it existed (replicated: the live value is
    /// rewritten on every replica; `seed`: its backoff's jitter).
    pub fn touch(&self, job: &mut Job, key: Vec<u8>, ttl: u32, seed: f64) -> u32 {
        if self.replicated {
            return self.update(job, &key, Rule::Touch, ttl, seed, |u| Ok(u.found.into()));
        }
        let key = key.into();
        self.single(job, Call::Touch { key, ttl }, |r| {
            answer(r, Answer::into_existed).map(JsValue::from_bool)
        })
    }

    /// Read many keys, packed back to back in `keys` (`ends[i]` is where key `i` ends): one
    /// copy into WebAssembly, one request per server. Done with the values packed (see
    /// `packed.rs`: `[codes, blob, ranges, values]` aligned with the keys; a key's failure is
    /// an `Error` in `values`).
    #[wasm_bindgen(js_name = getMulti)]
    pub fn get_multi(&self, job: &mut Job, keys: &[u8], ends: &[u32]) -> Result<u32, JsValue> {
        let conv = self.convention;
        let list = codec::unpack(keys, ends)?;
        let n = list.len();
        if self.replicated {
            let m = Read::new(self.rep(), &list);
            let out = move |rs: Vec<Result<Option<Versioned>, Error>>| {
                let mut p = Packed::new(n, 0);
                for (j, r) in rs.iter().enumerate() {
                    match r {
                        Ok(None) => {}
                        Ok(Some(v)) => p.typed(j, core_values::from_versioned(conv, v)),
                        Err(e) => p.other(j, js::error(e)),
                    }
                }
                Ok(p.finish())
            };
            return Ok(job.install(self.jobs(), m, out, no_view));
        }
        // The keys share one buffer: no allocation per key.
        let all = Bytes::copy_from_slice(keys);
        let mut start = 0;
        let list: Vec<Bytes> = ends
            .iter()
            .map(|&e| {
                let k = all.slice(start..e as usize);
                start = e as usize;
                k
            })
            .collect();
        let out = move |rs: Vec<Result<Option<Value>, Error>>| {
            let bytes = rs.iter().flatten().flatten().map(|v| v.data.len()).sum();
            let mut p = Packed::new(n, bytes);
            for (j, r) in rs.iter().enumerate() {
                match r {
                    Ok(None) => {}
                    Ok(Some(v)) => p.stored(conv, j, &v.data, v.flags),
                    Err(e) => p.other(j, js::error(e)),
                }
            }
            Ok(p.finish())
        };
        Ok(job.install_oneshot(self.jobs(), Each::<Gets>::new(list), out))
    }

    /// Store `values[i]` under `keys[i]` with `ttl`: one pipelined request per server (plain),
    /// or the replicated write of every key. Done with an array aligned with the keys: `true`
    /// where it was stored, else the key's `Error` (a value that cannot be stored is refused
    /// before anything is sent).
    #[wasm_bindgen(js_name = setMulti)]
    pub fn set_multi(
        &self,
        job: &mut Job,
        keys: &Array,
        values: &Array,
        ttl: u32,
    ) -> Result<u32, JsValue> {
        let keys = key_list(keys)?;
        if self.replicated {
            let (m, refused) = self.replicated_write(keys, Some(values), ttl);
            let out = move |rs| Ok(job::splice(&refused, rs, |_| JsValue::TRUE).into());
            return Ok(job.install(self.jobs(), m, out, no_view));
        }
        let mut refused = Vec::with_capacity(keys.len());
        let mut items = Vec::with_capacity(keys.len());
        for (i, key) in keys.into_iter().enumerate() {
            match plain(self, &values.get(i as u32)) {
                Ok((data, flags)) => {
                    refused.push(None);
                    items.push(Item {
                        key: key.into(),
                        data,
                        mode: StoreMode::Set,
                        flags,
                        ttl,
                    });
                }
                Err(e) => refused.push(Some(e)),
            }
        }
        let out = move |rs| Ok(job::splice(&refused, rs, |()| JsValue::TRUE).into());
        Ok(job.install_oneshot(self.jobs(), Each::<Stores>::new(items), out))
    }

    /// Delete many keys. Done with an array aligned with the keys: whether each existed
    /// (replicated: `true` once its tombstones met the write policy), or the key's `Error`.
    #[wasm_bindgen(js_name = deleteMulti)]
    pub fn delete_multi(&self, job: &mut Job, keys: &Array) -> Result<u32, JsValue> {
        let keys = key_list(keys)?;
        if self.replicated {
            let (m, refused) = self.replicated_write(keys, None, 0);
            let out = move |rs| Ok(job::splice(&refused, rs, |_| JsValue::TRUE).into());
            return Ok(job.install(self.jobs(), m, out, no_view));
        }
        let none = vec![None; keys.len()];
        let keys = keys.into_iter().map(Bytes::from).collect();
        let out = move |rs| Ok(job::splice(&none, rs, JsValue::from_bool).into());
        Ok(job.install_oneshot(self.jobs(), Each::<Deletes>::new(keys), out))
    }
}

fn key_list(keys: &Array) -> Result<Vec<Vec<u8>>, JsValue> {
    keys.iter()
        .map(|k| js::bytes_of(&k).ok_or_else(|| config("keys must be strings or Uint8Arrays")))
        .collect()
}
