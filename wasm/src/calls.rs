//! The client's calls as jobs. Each method translates its arguments, asks the core's
//! [`Mode`](multiput::machine::mode::Mode) for the call's machine (the same picker the Python
//! and PHP clients run: a plain call is one request to the key's owner or one per server, a
//! replicated one the replicated read, write or read-modify-write), installs it in a [`Job`]
//! and says how its output becomes a JavaScript value. Nothing here asks which mode the client
//! is in.
//!
//! Each method returns the job's first step (see `job.rs`): a one-shot machine (a plain call)
//! is started at once, and the codec turns its last answer straight into the call's value.

use bytes::Bytes;
use js_sys::Array;
use multiput::machine::mode::{Encode, Picked, Stored, WithVersion, Wrote};
use multiput::machine::Machine;
use multiput::protocol::text::StoreMode;
use multiput::values::Convention;
use wasm_bindgen::prelude::*;

use crate::core::{config, Core};
use crate::job::{self, Job, Outcome};
use crate::packed::Packed;
use crate::{codec, js, values};

/// A JavaScript value to store, in either form (the mode asks for the one it stores).
pub(crate) struct JsVal<'a>(pub Convention, pub &'a JsValue);

impl Encode for JsVal<'_> {
    type Error = JsValue;
    fn plain(&self) -> Result<(Bytes, u32), JsValue> {
        let (data, flags) = values::plain_from_js(self.0, self.1)?;
        Ok((data.into(), flags))
    }
    fn typed(
        &self,
    ) -> Result<
        (
            multiput::envelope::ValueType,
            multiput::envelope::Format,
            Bytes,
        ),
        JsValue,
    > {
        let t = values::typed_from_js(self.1)?;
        Ok((t.vtype(), t.format(), t.encode_payload().into()))
    }
}

/// A counter's value: a number, a `BigInt` past 2^53, or `null` (missing).
fn number(n: Option<u64>) -> Outcome {
    Ok(n.map_or(JsValue::NULL, js::uint))
}

impl Core {
    /// `value` in the form this client stores.
    pub(crate) fn encode(&self, value: &JsValue) -> Result<Stored, JsValue> {
        self.mode.encode(&JsVal(self.convention, value))
    }

    /// Install the picked machine `m`, done with `out` of its output.
    pub(crate) fn run<T: 'static>(
        &self,
        job: &mut Job,
        m: Picked<T>,
        out: impl Fn(T) -> Outcome + 'static,
    ) -> u32 {
        if m.oneshot() {
            job.install_oneshot(self.jobs(), m, out)
        } else {
            let conv = self.convention;
            job.install(self.jobs(), m, out, move |g| job::got_js(conv, g))
        }
    }

    /// A write's report as JavaScript (`job::report_js`), a plain write's made once per server.
    fn wrote(&self) -> impl Fn(Wrote) -> JsValue + 'static {
        let (stored_on, cluster) = (self.stored_on.clone(), self.cluster.clone());
        move |w| match w {
            Wrote::On(s) => stored_on.get(s).cloned().unwrap_or(JsValue::NULL),
            w => job::report_js(&w.report(&cluster)),
        }
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
        let m = self.mode.get(key.into(), versions);
        self.run(job, m, move |v: Option<WithVersion>| match v {
            None => Ok(JsValue::NULL),
            Some((g, _)) if !versions => job::got_value(conv, &g),
            Some((g, cas)) => {
                let v = job::got_value(conv, &g)?;
                Ok(if v.is_null() {
                    v
                } else {
                    job::with_cas(v, Some(cas))
                })
            }
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
        let v = self.encode(value)?;
        let m = self.mode.store(StoreMode::Set, key.into(), v, ttl, 0);
        let wrote = self.wrote();
        Ok(self.run(job, m, move |w| Ok(wrote(w))))
    }

    /// [`Core::set`] of bytes (a `Uint8Array` value, passed as bytes: no asking JavaScript
    /// what type it is).
    #[wasm_bindgen(js_name = setBytes)]
    pub fn set_bytes(&self, job: &mut Job, key: Vec<u8>, data: Vec<u8>, ttl: u32) -> u32 {
        let Ok(v) = self.mode.encode(&Bytes::from(data));
        let m = self.mode.store(StoreMode::Set, key.into(), v, ttl, 0);
        let wrote = self.wrote();
        self.run(job, m, move |w| Ok(wrote(w)))
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
        let mode = match (mode, js::u64_of(cas)) {
            ("add", _) => StoreMode::Add,
            ("replace", _) => StoreMode::Replace,
            ("append", _) => StoreMode::Append,
            ("prepend", _) => StoreMode::Prepend,
            ("cas", Some(c)) => StoreMode::Cas(c),
            ("cas", None) => return Err(config("cas needs the CAS unique or version from gets")),
            (m, _) => return Err(config(format!("unknown store mode {m:?}"))),
        };
        let v = self.encode(value)?;
        let m = self.mode.store(mode, key.into(), v, ttl, seed as u64);
        Ok(self.run(job, m, |_| Ok(JsValue::TRUE)))
    }

    /// Delete `key`. Done with whether it existed (replicated: tombstones are written to
    /// every replica, and `true` once the write policy was met).
    pub fn delete(&self, job: &mut Job, key: Vec<u8>) -> u32 {
        let m = self.mode.delete(key.into());
        self.run(job, m, |(existed, _)| Ok(existed.into()))
    }

    /// Add (`incr`) or subtract `delta` (a non-negative number or `BigInt`) to the counter
    /// `key`; when it is missing and `initial` is given, create it at `initial` with `ttl`.
    /// Done with the new value (a number, or a `BigInt` past 2^53), or `null` (missing, no
    /// initial). Plain: memcached's `incr`/`decr` (`decr` stops at 0); replicated: the core's
    /// exact counter, a read-modify-write serialized by CAS on the primary (`seed`: its
    /// backoff's jitter).
    #[allow(clippy::too_many_arguments)]
    pub fn arith(
        &self,
        job: &mut Job,
        key: Vec<u8>,
        incr: bool,
        delta: &JsValue,
        initial: &JsValue,
        ttl: u32,
        seed: f64,
    ) -> Result<u32, JsValue> {
        let delta = js::u64_of(delta)
            .ok_or_else(|| config("delta must be a non-negative integer (number or bigint)"))?;
        let initial = js::u64_of(initial);
        let m = self
            .mode
            .incr(key.into(), incr, delta, initial, ttl, seed as u64);
        Ok(self.run(job, m, number))
    }

    /// Give `key` a new TTL. Done with whether it existed (replicated: the live value is
    /// rewritten on every replica; `seed`: its backoff's jitter).
    pub fn touch(&self, job: &mut Job, key: Vec<u8>, ttl: u32, seed: f64) -> u32 {
        let m = self.mode.touch(key.into(), ttl, seed as u64);
        self.run(job, m, |found| Ok(found.into()))
    }

    /// Read many keys, packed back to back in `keys` (`ends[i]` is where key `i` ends): one
    /// copy into WebAssembly, one request per server. Done with the values packed (see
    /// `packed.rs`: `[codes, blob, ranges, values]` aligned with the keys; a key's failure is
    /// an `Error` in `values`).
    #[wasm_bindgen(js_name = getMulti)]
    pub fn get_multi(&self, job: &mut Job, keys: &[u8], ends: &[u32]) -> Result<u32, JsValue> {
        let conv = self.convention;
        codec::unpack(keys, ends)?;
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
        let n = list.len();
        let m = self.mode.get_multi(list, false);
        Ok(self.run(job, m, move |rs| {
            let mut p = Packed::new(n, Packed::bytes_of(&rs));
            for (j, r) in rs.iter().enumerate() {
                match r {
                    Ok(None) => {}
                    Ok(Some((g, _))) => p.got(conv, j, g),
                    Err(e) => p.other(j, js::error(e)),
                }
            }
            Ok(p.finish())
        }))
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
        let mut refused = Vec::with_capacity(keys.len());
        let mut items = Vec::with_capacity(keys.len());
        for (i, key) in keys.into_iter().enumerate() {
            match self.encode(&values.get(i as u32)) {
                Ok(v) => {
                    refused.push(None);
                    items.push((key, v));
                }
                Err(e) => refused.push(Some(e)),
            }
        }
        let m = self.mode.set_multi(items, ttl);
        Ok(self.run(job, m, move |rs| {
            Ok(job::splice(&refused, rs, |_| JsValue::TRUE).into())
        }))
    }

    /// Delete many keys. Done with an array aligned with the keys: whether each existed
    /// (replicated: `true` once its tombstones met the write policy), or the key's `Error`.
    #[wasm_bindgen(js_name = deleteMulti)]
    pub fn delete_multi(&self, job: &mut Job, keys: &Array) -> Result<u32, JsValue> {
        let keys = key_list(keys)?;
        let none = vec![None; keys.len()];
        let m = self.mode.delete_multi(keys);
        Ok(self.run(job, m, move |rs| {
            Ok(job::splice(&none, rs, JsValue::from_bool).into())
        }))
    }
}

fn key_list(keys: &Array) -> Result<Vec<Bytes>, JsValue> {
    keys.iter()
        .map(|k| {
            js::bytes_of(&k)
                .map(Bytes::from)
                .ok_or_else(|| config("keys must be strings or Uint8Arrays"))
        })
        .collect()
}
