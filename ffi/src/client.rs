//! The client handle: configuration, every call of the core's blocking clients, multi-key calls
//! in one crossing, CAS updates with a C callback, locks, and results in C structs or in PHP's
//! `serialize()` format.

use crate::phpser::Got;
use crate::value::{In, Out, PlainRules};
use crate::{
    bytes, fail, phpser, run, set_error, text, MULTIPUT_E_ARGUMENT, MULTIPUT_E_CALLBACK,
    MULTIPUT_E_CONFIG, MULTIPUT_E_KEY, MULTIPUT_E_NOT_FOUND, MULTIPUT_E_VALUE, MULTIPUT_OK,
};
use multiput::blocking::{Cache, Client, Got as CoreGot, Payload, ReplicatedClient};
use multiput::envelope::{Format, ValueType};
use multiput::recipes::{CasOptions, CasOutcome, Fresh, Lock, LockOptions, Update};
use multiput::replication::Versioned;
use multiput::values::Convention;
use multiput::StoreMode;
use multiput::{Error, Policy, ProtocolChoice, ReadPolicy, RingMode, WritePolicy, WriteReport};
use std::borrow::Cow;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A client configuration under construction: create it with [`multiput_config_new`], set
/// options with [`multiput_config_set`], build clients with [`multiput_client_new`], free it
/// with [`multiput_config_free`].
#[derive(Debug, Clone)]
pub struct MultiputConfig {
    servers: Vec<String>,
    mode: RingMode,
    protocol: ProtocolChoice,
    timeout: Duration,
    connect_timeout: Duration,
    retry: Duration,
    failure_limit: u32,
    max_value_size: usize,
    pool_size: usize,
    nodelay: bool,
    binary_keys: bool,
    prefix: Vec<u8>,
    policy: Policy,
    /// `write`/`read` as given: `quorum` (a majority) depends on `replicas`, which may be set
    /// later, so they are resolved by [`Policy`]'s parsers in `build`.
    write: Option<String>,
    read: Option<String>,
    replicated: bool,
    rules: PlainRules,
    cas: CasOptions,
}

impl Default for MultiputConfig {
    fn default() -> Self {
        let d = multiput::Config::default();
        MultiputConfig {
            servers: Vec::new(),
            mode: d.ring_mode,
            protocol: d.protocol,
            timeout: d.timeout,
            connect_timeout: d.connect_timeout,
            retry: d.retry_interval,
            failure_limit: d.failure_limit,
            max_value_size: d.max_value_size,
            pool_size: d.blocking_pool_size,
            nodelay: d.tcp_nodelay,
            binary_keys: d.binary_keys,
            prefix: Vec::new(),
            policy: Policy {
                replicas: 1,
                ..Policy::default()
            },
            write: None,
            read: None,
            replicated: false,
            rules: PlainRules {
                convention: Convention::Php,
                compress_threshold: 0,
            },
            cas: CasOptions::default(),
        }
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("option {name}: {v:?} is not a valid number"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "option {name}: {v:?} is not a boolean (1/0, true/false)"
        )),
    }
}

impl MultiputConfig {
    fn set(&mut self, name: &str, v: &str) -> Result<(), String> {
        let ms = |v: &str| parse_num::<u64>(name, v).map(Duration::from_millis);
        match name.trim() {
            "servers" => {
                self.servers = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                for s in &self.servers {
                    s.parse::<multiput::ServerSpec>()
                        .map_err(|e| e.to_string())?;
                }
            }
            "mode" | "distribution" => self.mode = v.parse().map_err(|e: Error| e.to_string())?,
            "protocol" => {
                self.protocol = match v.trim().to_ascii_lowercase().as_str() {
                    "auto" => ProtocolChoice::Auto,
                    "text" => ProtocolChoice::Text,
                    "meta" => ProtocolChoice::Meta,
                    _ => return Err(format!("option protocol: {v:?} is not auto, text or meta")),
                }
            }
            "timeout_ms" => self.timeout = ms(v)?,
            "connect_timeout_ms" => self.connect_timeout = ms(v)?,
            "retry_ms" => self.retry = ms(v)?,
            "failure_limit" => self.failure_limit = parse_num(name, v)?,
            "max_value_size" => self.max_value_size = parse_num(name, v)?,
            "pool_size" => self.pool_size = parse_num(name, v)?,
            "tcp_nodelay" => self.nodelay = parse_bool(name, v)?,
            "binary_keys" => self.binary_keys = parse_bool(name, v)?,
            "prefix" => self.prefix = v.as_bytes().to_vec(),
            "replicas" => {
                let n: usize = parse_num(name, v)?;
                self.replicated = n > 0;
                self.policy.replicas = n.max(1);
            }
            // Checked now (any replica count), resolved against `replicas` in `build`.
            "write" => {
                WritePolicy::parse(v, 1).map_err(|e| e.to_string())?;
                self.write = Some(v.to_string());
            }
            "read" => {
                ReadPolicy::parse(v, 1).map_err(|e| e.to_string())?;
                self.read = Some(v.to_string());
            }
            "tombstone_ttl" => self.policy.tombstone_ttl = parse_num(name, v)?,
            "failover" => self.policy.failover = parse_bool(name, v)?,
            "read_repair" => self.policy.read_repair = parse_bool(name, v)?,
            "convention" => {
                self.rules.convention = v.parse().map_err(|e: Error| e.to_string())?;
            }
            "compress_threshold" => self.rules.compress_threshold = parse_num(name, v)?,
            "cas_attempts" => self.cas.max_attempts = parse_num::<u32>(name, v)?.max(1),
            "cas_deadline_ms" => self.cas.deadline = ms(v)?,
            other => {
                return Err(format!(
                    "unknown option {other:?} (servers, mode, protocol, timeout_ms, \
                     connect_timeout_ms, retry_ms, failure_limit, max_value_size, pool_size, \
                     tcp_nodelay, binary_keys, prefix, replicas, write, read, tombstone_ttl, failover, \
                     read_repair, convention, compress_threshold, cas_attempts, cas_deadline_ms)"
                ))
            }
        }
        Ok(())
    }

    fn build(&self) -> Result<MultiputClient, Error> {
        let c = self.clone_settings();
        let plain = Client::builder()
            .servers(self.servers.iter())
            .configure(move |b| {
                b.ring_mode(c.mode)
                    .protocol(c.protocol)
                    .timeout(c.timeout)
                    .connect_timeout(c.connect_timeout)
                    .retry_interval(c.retry)
                    .failure_limit(c.failure_limit)
                    .max_value_size(c.max_value_size)
                    .blocking_pool_size(c.pool_size)
                    .tcp_nodelay(c.nodelay)
                    .binary_keys(c.binary_keys)
                    .key_prefix(c.prefix)
            })
            .build()?;
        let repl = if self.replicated {
            let mut policy = self.policy;
            if let Some(w) = &self.write {
                policy.write = WritePolicy::parse(w, policy.replicas)?;
            }
            if let Some(r) = &self.read {
                policy.read = ReadPolicy::parse(r, policy.replicas)?;
            }
            Some(ReplicatedClient::new(plain.clone(), policy)?)
        } else {
            None
        };
        let cl = plain.cluster();
        let addresses = (0..cl.len())
            .map(|i| CString::new(cl.name(i)).unwrap_or_default())
            .collect();
        Ok(MultiputClient {
            cache: Cache::new(plain, None)?.with_replicated(repl),
            rules: self.rules,
            cas: self.cas,
            addresses,
        })
    }

    fn clone_settings(&self) -> Settings {
        Settings {
            mode: self.mode,
            protocol: self.protocol,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            retry: self.retry,
            failure_limit: self.failure_limit,
            max_value_size: self.max_value_size,
            pool_size: self.pool_size,
            nodelay: self.nodelay,
            binary_keys: self.binary_keys,
            prefix: self.prefix.clone(),
        }
    }
}

struct Settings {
    mode: RingMode,
    protocol: ProtocolChoice,
    timeout: Duration,
    connect_timeout: Duration,
    retry: Duration,
    failure_limit: u32,
    max_value_size: usize,
    pool_size: usize,
    nodelay: bool,
    binary_keys: bool,
    prefix: Vec<u8>,
}

/// A new configuration with the core's defaults (no servers; plain mode with PECL memcached
/// flags; no compression). Free it with [`multiput_config_free`].
///
/// # Safety
/// `out` is a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn multiput_config_new(out: *mut *mut MultiputConfig) -> i32 {
    run(|| {
        if out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "out is null"));
        }
        // SAFETY: checked non-null.
        unsafe { *out = Box::into_raw(Box::default()) };
        Ok(())
    })
}

/// Set one option (both strings NUL-terminated UTF-8). Unknown names and invalid values are
/// [`MULTIPUT_E_CONFIG`] with a message naming the problem. Options:
///
/// | name | value | default |
/// | --- | --- | --- |
/// | `servers` | `host[:port[:weight]],...` (replaces the list; hosts hashed as written) | none |
/// | `mode` | `libketama_compatible`, `ketama_md5`, `modula` (PECL's default distribution) or `rendezvous` (pymemcache's HashClient) | `libketama_compatible` |
/// | `protocol` | `auto`, `text`, `meta` | `auto` |
/// | `timeout_ms`, `connect_timeout_ms` | request and connect bounds | 1000 |
/// | `retry_ms` | how long a down server is skipped | 1000 |
/// | `failure_limit` | failures in a row that mark a server down | 1 |
/// | `max_value_size` | bytes | 1048576 |
/// | `pool_size` | idle connections kept per server | 16 |
/// | `tcp_nodelay` | 1/0 | 1 |
/// | `binary_keys` | 1: keys with spaces/control bytes (up to 186 bytes) go base64 over meta, as PECL's `OPT_BINARY_PROTOCOL` sends them; 0: refused | 0 |
/// | `prefix` | key prefix sent on the wire, not hashed (PECL `OPT_PREFIX_KEY`) | empty |
/// | `replicas` | 0: plain values (flags of `convention`); N >= 1: N enveloped copies | 0 |
/// | `write` | `all`, `one`, `quorum:N` | `all` |
/// | `read` | `all`, `first_hit`, `quorum:N` | `all` |
/// | `tombstone_ttl` | seconds deletes are remembered | 86400 |
/// | `failover` | 1: move copies off down servers | 0 |
/// | `read_repair` | 1/0 | 1 |
/// | `convention` | plain-value flags: `php` (PECL memcached) or `python` (pylibmc) | `php` |
/// | `compress_threshold` | compress plain PHP values of at least this many bytes (zlib, as PECL reads it); 0 never | 0 |
/// | `cas_attempts`, `cas_deadline_ms` | bounds of CAS updates | 32, 2000 |
///
/// # Safety
/// `config` came from [`multiput_config_new`]; `name` and `value` are NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn multiput_config_set(
    config: *mut MultiputConfig,
    name: *const c_char,
    value: *const c_char,
) -> i32 {
    run(|| {
        if config.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "config is null"));
        }
        let name = unsafe { text(name, "name") }?;
        let value = unsafe { text(value, "value") }?;
        // SAFETY: per the contract above.
        let config = unsafe { &mut *config };
        config
            .set(name, value)
            .map_err(|e| set_error(MULTIPUT_E_CONFIG, e))
    })
}

/// Free a configuration. Null is ignored.
///
/// # Safety
/// `config` is null or came from [`multiput_config_new`] and was not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_config_free(config: *mut MultiputConfig) {
    if !config.is_null() {
        // SAFETY: per the contract above.
        let _ = std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(config) }));
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// A memcached client: plain, or replicated (`replicas` >= 1). Thread-safe: share one handle
/// between threads; it pools connections per server. Free it with [`multiput_client_free`].
#[derive(Clone)]
pub struct MultiputClient {
    /// Plain or replicated behind one API (the core's facade): this file only translates.
    cache: Cache,
    rules: PlainRules,
    cas: CasOptions,
    addresses: Vec<CString>,
}

/// Whether `key` can be sent by this client as it is configured (key prefix, binary keys,
/// protocol): `MULTIPUT_OK`, or `MULTIPUT_E_KEY` with the reason in the last error. Nothing
/// is sent; bindings ask this instead of restating the key rules.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_check_key(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        c.plain().cluster().check_key(key).map_err(|e| fail(&e))
    })
}

/// A second handle on the same replicated client (connections, clock, writer id) with other
/// read and/or write policies (`read`/`write` as in [`multiput_config_set`]; null keeps the
/// current one), for the calls that need them. The replica count and placement do not change.
/// Free it with [`multiput_client_free`]; the original stays valid.
///
/// # Safety
/// `client` came from [`multiput_client_new`] (or a sibling); `read` and `write` are null or
/// NUL-terminated; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_with_policies(
    client: *const MultiputClient,
    read: *const c_char,
    write: *const c_char,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if client.is_null() || out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "client or out is null"));
        }
        // SAFETY: per the contract above.
        let c = unsafe { &*client };
        let Some(r) = c.repl() else {
            return Err(set_error(
                MULTIPUT_E_CONFIG,
                "per-call policies need a replicated client (replicas > 0)",
            ));
        };
        let p = r.policy();
        let read = if read.is_null() {
            p.read
        } else {
            let v = unsafe { text(read, "read") }?;
            ReadPolicy::parse(v, p.replicas).map_err(|e| fail(&e))?
        };
        let write = if write.is_null() {
            p.write
        } else {
            let v = unsafe { text(write, "write") }?;
            WritePolicy::parse(v, p.replicas).map_err(|e| fail(&e))?
        };
        let repl = r.with_policies(read, write).map_err(|e| fail(&e))?;
        let view = MultiputClient {
            cache: c.cache.with_replicated(Some(repl)),
            ..c.clone()
        };
        unsafe { *out = Box::into_raw(Box::new(view)) };
        Ok(())
    })
}

/// Build a client from a configuration (which can then be changed or freed). No connection is
/// opened until the first call.
///
/// # Safety
/// `config` came from [`multiput_config_new`]; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_new(
    config: *const MultiputConfig,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if config.is_null() || out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "config or out is null"));
        }
        // SAFETY: per the contract above.
        let client = unsafe { &*config }.build().map_err(|e| fail(&e))?;
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// One client kept for the life of the process under a persistent id.
struct Persistent {
    id: String,
    /// The configuration it was built from (`Debug` of the config).
    fingerprint: String,
    client: MultiputClient,
    /// What the binding kept with it (see [`multiput_persistent_set_state`]).
    state: Vec<u8>,
}

/// Process-wide clients by persistent id. Never freed: a binding whose objects live for one
/// request (PHP) finds its client, and its connections, here in the next request.
static PERSISTENT: std::sync::Mutex<Vec<Persistent>> = std::sync::Mutex::new(Vec::new());

fn persistent() -> std::sync::MutexGuard<'static, Vec<Persistent>> {
    PERSISTENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Like [`multiput_client_new`], but the client (its connection pools) is kept for the life of
/// the process under `persistent_id`: a later call with the same id and the same
/// configuration gets a handle on the same connections, even after every earlier handle was
/// freed (PECL memcached's persistent ids; what keeps connections across PHP-FPM requests:
/// the library is linked `-z nodelete`, so it stays loaded, and with it this registry, even
/// when PHP's FFI closes it at the end of a request). A different configuration under the
/// same id replaces the kept client (and drops its state). Each handle is freed with
/// [`multiput_client_free`]; freeing a handle never closes the kept client's connections.
///
/// # Safety
/// `persistent_id` is NUL-terminated; `config` came from [`multiput_config_new`]; `out` is
/// valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_new_persistent(
    persistent_id: *const c_char,
    config: *const MultiputConfig,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if config.is_null() || out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "config or out is null"));
        }
        let id = unsafe { text(persistent_id, "persistent_id") }?;
        // SAFETY: per the contract above.
        let config = unsafe { &*config };
        let fingerprint = format!("{config:?}");
        let mut kept = persistent();
        let client = match kept
            .iter()
            .find(|p| p.id == id && p.fingerprint == fingerprint)
        {
            Some(p) => p.client.clone(),
            None => {
                let c = config.build().map_err(|e| fail(&e))?;
                kept.retain(|p| p.id != id);
                kept.push(Persistent {
                    id: id.to_string(),
                    fingerprint,
                    client: c.clone(),
                    state: Vec::new(),
                });
                c
            }
        };
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// A handle on the client kept under `persistent_id` (by
/// [`multiput_client_new_persistent`]), without building a configuration: `*out` is the
/// handle (free it with [`multiput_client_free`]) and `state` holds the bytes last kept with
/// [`multiput_persistent_set_state`] (empty if none). `MULTIPUT_E_NOT_FOUND` when nothing is
/// kept under that id (`*out` is then null). One lookup per PHP request instead of a
/// configuration rebuilt option by option.
///
/// # Safety
/// `persistent_id` is NUL-terminated; `out` is valid; `state` is a buffer (see
/// [`MultiputBuffer`]).
#[no_mangle]
pub unsafe extern "C" fn multiput_persistent_get(
    persistent_id: *const c_char,
    out: *mut *mut MultiputClient,
    state: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        if out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "out is null"));
        }
        // SAFETY: checked non-null.
        unsafe { *out = std::ptr::null_mut() };
        let id = unsafe { text(persistent_id, "persistent_id") }?;
        let mut buf = unsafe { take_buf(state) }?;
        let kept = persistent();
        let Some(p) = kept.iter().find(|p| p.id == id) else {
            put_buf(state, buf);
            return Err(set_error(
                MULTIPUT_E_NOT_FOUND,
                format!("no client is kept under the persistent id {id:?}"),
            ));
        };
        buf.extend_from_slice(&p.state);
        let client = p.client.clone();
        drop(kept);
        put_buf(state, buf);
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// Keep `len` bytes (a binding's own settings, e.g. PHP's serialized server list and options)
/// with the client kept under `persistent_id`, for [`multiput_persistent_get`] to return.
/// `MULTIPUT_E_NOT_FOUND` when no client is kept under that id.
///
/// # Safety
/// `persistent_id` is NUL-terminated; `data` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_persistent_set_state(
    persistent_id: *const c_char,
    data: *const c_char,
    len: usize,
) -> i32 {
    run(|| {
        let id = unsafe { text(persistent_id, "persistent_id") }?;
        let data = unsafe { bytes(data, len, "data") }?;
        let mut kept = persistent();
        let Some(p) = kept.iter_mut().find(|p| p.id == id) else {
            return Err(set_error(
                MULTIPUT_E_NOT_FOUND,
                format!("no client is kept under the persistent id {id:?}"),
            ));
        };
        p.state = data.to_vec();
        Ok(())
    })
}

/// Build a client from options in one string: `name=value` entries separated by newlines or
/// `;` (see [`multiput_config_set`] for the names), e.g.
/// `"servers=10.0.0.1,10.0.0.2:11212;replicas=2;timeout_ms=250"`.
///
/// # Safety
/// `options` is NUL-terminated; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_open(
    options: *const c_char,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "out is null"));
        }
        let options = unsafe { text(options, "options") }?;
        let mut config = MultiputConfig::default();
        for entry in options
            .split(['\n', ';'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, value) = entry.split_once('=').ok_or_else(|| {
                set_error(
                    MULTIPUT_E_CONFIG,
                    format!("option {entry:?} is not name=value"),
                )
            })?;
            config
                .set(name, value)
                .map_err(|e| set_error(MULTIPUT_E_CONFIG, e))?;
        }
        let client = config.build().map_err(|e| fail(&e))?;
        // SAFETY: checked non-null.
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// Free a client (its connections are closed). Null is ignored.
///
/// # Safety
/// `client` is null or came from a `multiput_client_*` constructor and was not freed before;
/// no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_free(client: *mut MultiputClient) {
    if !client.is_null() {
        // SAFETY: per the contract above.
        let _ = std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(client) }));
    }
}

unsafe fn client_ref<'a>(c: *const MultiputClient) -> Result<&'a MultiputClient, i32> {
    if c.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "client is null"));
    }
    // SAFETY: the caller passes a live client.
    Ok(unsafe { &*c })
}

unsafe fn key_arg<'a>(p: *const c_char, len: usize) -> Result<&'a [u8], i32> {
    if len > 65536 {
        return Err(set_error(
            MULTIPUT_E_KEY,
            format!("invalid key: {len} bytes is over the limit of 250"),
        ));
    }
    unsafe { bytes(p, len, "key") }
}

unsafe fn value_arg<'a>(
    vtype: u8,
    format: u8,
    data: *const c_char,
    len: usize,
) -> Result<In<'a>, i32> {
    let payload = unsafe { bytes(data, len, "data") }?;
    In::new(vtype, format, payload).map_err(|e| set_error(MULTIPUT_E_ARGUMENT, e.0))
}

unsafe fn write_out<T>(out: *mut T, v: T) -> Result<(), i32> {
    if out.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "an output pointer is null"));
    }
    // SAFETY: checked non-null; the caller passes a valid pointer.
    unsafe { out.write(v) };
    Ok(())
}

thread_local! {
    static LAST_WRITE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn note_write_ok(report: WriteReport) {
    note_write(&report);
}

fn note_write(r: &WriteReport) {
    LAST_WRITE.with(|w| w.set((r.stored.len(), r.failed.len())));
}

/// How many replicas stored, and how many did not, in the calling thread's last successful
/// replicated write (set, delete, CAS update...). A write that succeeded under its policy may
/// still have missed replicas (`*failed` > 0): they are repaired by later reads.
///
/// # Safety
/// `stored` and `failed` are null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_last_write(stored: *mut usize, failed: *mut usize) {
    let (s, f) = LAST_WRITE.with(Cell::get);
    // SAFETY: checked non-null; the caller passes valid pointers.
    unsafe {
        if !stored.is_null() {
            *stored = s;
        }
        if !failed.is_null() {
            *failed = f;
        }
    }
}

/// Store modes of [`multiput_store`].
pub const MULTIPUT_SET: u32 = 0;
/// Store only if missing.
pub const MULTIPUT_ADD: u32 = 1;
/// Store only if present.
pub const MULTIPUT_REPLACE: u32 = 2;
/// Append to a present value.
pub const MULTIPUT_APPEND: u32 = 3;
/// Prepend to a present value.
pub const MULTIPUT_PREPEND: u32 = 4;

/// Get option: also return the CAS unique (plain) or version token (replicated).
pub const MULTIPUT_GET_CAS: u32 = 1;
/// PHP output option: emit a miss as `null` (PECL `GET_PRESERVE_ORDER`) instead of omitting it.
pub const MULTIPUT_GET_PRESERVE_ORDER: u32 = 2;
/// PHP output option: each value as PECL's `GET_EXTENDED` array (value, cas, flags).
pub const MULTIPUT_GET_EXTENDED: u32 = 4;

impl MultiputClient {
    fn plain(&self) -> &Client {
        self.cache.plain()
    }

    fn repl(&self) -> Option<&ReplicatedClient> {
        self.cache.replicated()
    }

    /// A value the core's facade read, as this ABI hands it out.
    fn got(&self, g: CoreGot) -> Got {
        match g {
            CoreGot::Plain(v) => Got::Plain(v),
            CoreGot::Replicated(v) => Got::Decoded(Out::from_versioned(&v, &self.rules)),
        }
    }

    fn get_one(&self, key: &[u8], cas: bool) -> Result<Option<Got>, Error> {
        Ok(if cas {
            self.cache.gets(key)?.map(|(g, _)| self.got(g))
        } else {
            self.cache.get(key)?.map(|g| self.got(g))
        })
    }

    fn get_many(&self, keys: &[&[u8]], cas: bool) -> Vec<Result<Option<Got>, Error>> {
        if cas {
            let rs = self.cache.gets_multi(keys);
            return rs
                .into_iter()
                .map(|r| r.map(|v| v.map(|(g, _)| self.got(g))))
                .collect();
        }
        let rs = self.cache.get_multi(keys);
        rs.into_iter()
            .map(|r| r.map(|v| v.map(|g| self.got(g))))
            .collect()
    }

    /// The plain form of `v` for a plain store (encoded by the value convention, compressed
    /// when large); a replicated store takes the typed form and needs none.
    fn plain_form<'v>(&self, v: In<'v>, flags: u32) -> Result<(Cow<'v, [u8]>, u32), i32> {
        if self.repl().is_some() {
            return Ok((Cow::Borrowed(v.payload), 0));
        }
        let (data, flags) = self.encode_plain(v, flags)?;
        Ok((Cow::Owned(data), flags))
    }

    /// Record a replicated write's report for [`multiput_last_write`].
    fn noted(&self, report: WriteReport) {
        if self.repl().is_some() {
            note_write(&report);
        }
    }

    fn encode_plain(&self, v: In<'_>, flags: u32) -> Result<(Vec<u8>, u32), i32> {
        self.rules
            .encode(v, flags)
            .map_err(|e| set_error(MULTIPUT_E_VALUE, e.0))
    }

    fn store(&self, mode: u32, key: &[u8], v: In<'_>, ttl: u32, flags: u32) -> Result<(), i32> {
        let m = match mode {
            MULTIPUT_SET => StoreMode::Set,
            MULTIPUT_ADD => StoreMode::Add,
            MULTIPUT_REPLACE => StoreMode::Replace,
            MULTIPUT_APPEND => StoreMode::Append,
            MULTIPUT_PREPEND => StoreMode::Prepend,
            _ => {
                return Err(set_error(
                    MULTIPUT_E_ARGUMENT,
                    format!("unknown store mode {mode}"),
                ))
            }
        };
        let appending = matches!(m, StoreMode::Append | StoreMode::Prepend);
        if appending && !matches!(v.vtype, ValueType::Bytes | ValueType::Text) {
            return Err(set_error(
                MULTIPUT_E_VALUE,
                "append/prepend takes a string (bytes or text)",
            ));
        }
        // Append and prepend add raw bytes to what is stored: no convention encoding.
        let (plain, pflags) = if appending {
            (Cow::Borrowed(v.payload), 0)
        } else {
            self.plain_form(v, flags)?
        };
        let p = payload(v, &plain, pflags);
        let rep = self.cache.store(m, key, &p, ttl).map_err(|e| fail(&e))?;
        self.noted(rep);
        Ok(())
    }

    /// A conditional write on a replicated key, serialized through the core's replicated CAS
    /// update: `decide` sees the latest copy and returns the value to store, `None` to leave
    /// it, or the error to report (NotStored, Exists, NotFound...).
    fn repl_update(
        &self,
        r: &ReplicatedClient,
        key: &[u8],
        ttl: u32,
        decide: impl FnMut(Option<&Versioned>) -> Result<Option<Owned>, Error>,
    ) -> Result<(), i32> {
        r.conditional(key, ttl, decide)
            .map(note_write_ok)
            .map_err(|e| fail(&e))
    }

    fn incr(
        &self,
        key: &[u8],
        delta: u64,
        decr: bool,
        initial: Option<u64>,
        ttl: u32,
    ) -> Result<u64, i32> {
        // The core's counters: increment-with-initial (plain), the exact replicated counter.
        let got = self
            .cache
            .incr(key, !decr, delta, initial, ttl)
            .map_err(|e| fail(&e))?;
        got.ok_or_else(|| set_error(MULTIPUT_E_NOT_FOUND, "not found: the key does not exist"))
    }
}

/// A typed value to store, owned: type, format, canonical payload.
/// Both forms of a value for the core's facade: the caller's typed value, and its plain
/// encoding with `flags`.
fn payload<'a>(v: In<'a>, plain: &'a [u8], flags: u32) -> Payload<'a> {
    Payload {
        value_type: v.vtype,
        format: v.format,
        typed: v.payload,
        plain,
        flags,
        flags_given: false,
    }
}

type Owned = (ValueType, Format, Vec<u8>);

fn own(v: In<'_>) -> Owned {
    (v.vtype, v.format, v.payload.to_vec())
}

/// Split `keys` (`len` bytes) at every `sep` byte. An empty buffer is no keys.
unsafe fn split_keys<'a>(keys: *const c_char, len: usize, sep: u8) -> Result<Vec<&'a [u8]>, i32> {
    let all = unsafe { bytes(keys, len, "keys") }?;
    if all.is_empty() {
        return Ok(Vec::new());
    }
    Ok(all.split(|b| *b == sep).collect())
}

// ---------------------------------------------------------------------------------------------
// Results in C structs
// ---------------------------------------------------------------------------------------------

/// One value read, or one key's result in a multi-key call.
///
/// `data`/`data_len` hold the canonical payload of `value_type`: the bytes of a bytes, text or
/// serialized value; ASCII decimal for an int; 8 big-endian bytes for a float; one byte 0/1
/// for a bool. `int_value` (int, bool) and `float_value` (float) hold the same number decoded.
#[repr(C)]
pub struct MultiputItem {
    /// The key (multi-key results; the requested key for single gets).
    pub key: *const u8,
    /// Its length.
    pub key_len: usize,
    /// The payload (never null; may be empty).
    pub data: *const u8,
    /// Its length.
    pub data_len: usize,
    /// The integer of an int or bool value.
    pub int_value: i64,
    /// The float of a float value.
    pub float_value: f64,
    /// The CAS unique (plain, when asked for) or the version token (replicated).
    pub cas: u64,
    /// The memcached flags stored with the value.
    pub flags: u32,
    /// Multi-key results: `MULTIPUT_OK` (a hit, or stored/deleted), `MULTIPUT_E_NOT_FOUND`
    /// (a miss), or the error of the key's server.
    pub status: i32,
    /// `MULTIPUT_TYPE_*` (never `STRING`).
    pub value_type: u8,
    /// `MULTIPUT_FORMAT_*` for serialized values.
    pub format: u8,
    /// 1 when the value carried multiput's envelope.
    pub enveloped: u8,
    /// 1 for a plain value whose flags the convention does not define (igbinary, msgpack, an
    /// unknown or corrupt compressed value): `data` is the stored bytes, `flags` say what
    /// they are.
    pub raw: u8,
}

#[repr(C)]
struct OwnedItem {
    item: MultiputItem,
    key: Vec<u8>,
    data: Vec<u8>,
}

fn item_of(key: &[u8], status: i32, out: Option<&Out>) -> (MultiputItem, Vec<u8>, Vec<u8>) {
    let key = key.to_vec();
    let data = out.map(|o| o.payload.clone()).unwrap_or_default();
    let o = out.cloned().unwrap_or_default();
    let item = MultiputItem {
        key: key.as_ptr(),
        key_len: key.len(),
        data: data.as_ptr(),
        data_len: data.len(),
        int_value: o.int_value,
        float_value: o.float_value,
        cas: o.cas,
        flags: o.flags,
        status,
        value_type: o.vtype,
        format: o.format,
        enveloped: u8::from(o.enveloped),
        raw: u8::from(o.raw),
    };
    (item, key, data)
}

fn boxed_item(key: &[u8], out: &Out) -> *mut MultiputItem {
    let (item, key, data) = item_of(key, MULTIPUT_OK, Some(out));
    Box::into_raw(Box::new(OwnedItem { item, key, data })).cast()
}

/// Free an item returned by the library. Null is ignored.
///
/// # Safety
/// `item` is null or came from [`multiput_get`] and was not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_item_free(item: *mut MultiputItem) {
    if !item.is_null() {
        // SAFETY: every single item is the first field of a boxed OwnedItem (repr(C)).
        let _ =
            std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(item.cast::<OwnedItem>()) }));
    }
}

/// Results of a multi-key call, aligned with the keys given. Free with [`multiput_items_free`].
#[repr(C)]
pub struct MultiputItems {
    /// `count` items, in the order of the keys.
    pub items: *const MultiputItem,
    /// Number of items.
    pub count: usize,
    /// Items with status `MULTIPUT_OK`.
    pub ok: usize,
    /// Items with status `MULTIPUT_E_NOT_FOUND`.
    pub not_found: usize,
    /// Items with any other status.
    pub errors: usize,
    /// The status of the first item in error (0 if none); its message is the thread's last
    /// error.
    pub first_error: i32,
}

#[repr(C)]
struct OwnedItems {
    head: MultiputItems,
    items: Vec<MultiputItem>,
    store: Vec<(Vec<u8>, Vec<u8>)>,
}

fn boxed_items<'k>(
    results: impl Iterator<Item = (&'k [u8], Result<Option<Out>, Error>)>,
) -> *mut MultiputItems {
    let mut owned = OwnedItems {
        head: MultiputItems {
            items: std::ptr::null(),
            count: 0,
            ok: 0,
            not_found: 0,
            errors: 0,
            first_error: 0,
        },
        items: Vec::new(),
        store: Vec::new(),
    };
    for (key, r) in results {
        let (status, out) = match &r {
            Ok(Some(o)) => (MULTIPUT_OK, Some(o)),
            Ok(None) => (MULTIPUT_E_NOT_FOUND, None),
            Err(e) => {
                let c = crate::code_of(e);
                if owned.head.first_error == 0 {
                    fail(e);
                    owned.head.first_error = c;
                }
                (c, None)
            }
        };
        match status {
            MULTIPUT_OK => owned.head.ok += 1,
            MULTIPUT_E_NOT_FOUND => owned.head.not_found += 1,
            _ => owned.head.errors += 1,
        }
        let (item, k, d) = item_of(key, status, out);
        owned.items.push(item);
        owned.store.push((k, d));
    }
    owned.head.items = owned.items.as_ptr();
    owned.head.count = owned.items.len();
    Box::into_raw(Box::new(owned)).cast()
}

/// Free multi-key results. Null is ignored.
///
/// # Safety
/// `items` is null or came from the library and was not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_items_free(items: *mut MultiputItems) {
    if !items.is_null() {
        // SAFETY: every MultiputItems is the first field of a boxed OwnedItems (repr(C)).
        let _ =
            std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(items.cast::<OwnedItems>()) }));
    }
}

/// Get `key`. On a hit `*out` is an item to free with [`multiput_item_free`]; on a miss
/// `*out` is null and the call returns `MULTIPUT_OK`. `opts`: [`MULTIPUT_GET_CAS`].
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_get(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    opts: u32,
    out: *mut *mut MultiputItem,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let got = c
            .get_one(key, opts & MULTIPUT_GET_CAS != 0)
            .map_err(|e| fail(&e))?;
        if let Some(g) = got {
            unsafe { write_out(out, boxed_item(key, &g.into_out(&c.rules))) }?;
        }
        Ok(())
    })
}

/// Get many keys in one call: `keys` holds `keys_len` bytes of keys separated by the byte
/// `sep` (e.g. `'\n'`; keys cannot contain whitespace or control bytes). Each server gets one
/// request for all its keys, all servers at once. `*out` (free with [`multiput_items_free`])
/// has one item per key, in order: a hit, a miss (`MULTIPUT_E_NOT_FOUND`) or the error of the
/// key's server, so one failed server does not hide the others' answers. Returns `MULTIPUT_OK`
/// unless the arguments are bad.
///
/// # Safety
/// `client` is live; `keys` points to `keys_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_get_multi(
    client: *const MultiputClient,
    keys: *const c_char,
    keys_len: usize,
    sep: u8,
    opts: u32,
    out: *mut *mut MultiputItems,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let keys = unsafe { split_keys(keys, keys_len, sep) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let rules = c.rules;
        let rs = c
            .get_many(&keys, opts & MULTIPUT_GET_CAS != 0)
            .into_iter()
            .map(|r| r.map(|g| g.map(|g| g.into_out(&rules))));
        unsafe { write_out(out, boxed_items(keys.iter().copied().zip(rs))) }
    })
}

/// Store a typed value. `mode`: [`MULTIPUT_SET`], [`MULTIPUT_ADD`], [`MULTIPUT_REPLACE`],
/// [`MULTIPUT_APPEND`], [`MULTIPUT_PREPEND`]. `value_type` is a `MULTIPUT_TYPE_*`, `format` a
/// `MULTIPUT_FORMAT_*` (serialized values only), `data` the canonical payload (see
/// [`MultiputItem`]). `ttl` is memcached's exptime. `flags` are OR-ed into the flags of a plain
/// value (PECL user flags live in bits 16..31); enveloped values are stored with flags 0.
///
/// Plain mode: the value is stored with the flags of the configured convention (PECL
/// memcached's by default), compressed as PECL does above `compress_threshold`. Replicated
/// mode: in the envelope on every replica; add, replace, append and prepend are conditional
/// updates serialized by CAS on the key's primary replica. Errors:
/// `MULTIPUT_E_NOT_STORED` (add/replace/append/prepend refused), `MULTIPUT_E_KEY`,
/// `MULTIPUT_E_VALUE_TOO_LARGE`, `MULTIPUT_E_REPLICATION`, server errors.
///
/// # Safety
/// `client` is live; `key` and `data` point to their lengths in bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_store(
    client: *const MultiputClient,
    mode: u32,
    key: *const c_char,
    key_len: usize,
    value_type: u8,
    format: u8,
    data: *const c_char,
    data_len: usize,
    ttl: u32,
    flags: u32,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let v = unsafe { value_arg(value_type, format, data, data_len) }?;
        c.store(mode, key, v, ttl, flags)
    })
}

/// Compare-and-swap: store only if the key still has `cas` (a CAS unique from a get with
/// [`MULTIPUT_GET_CAS`]; in replicated mode the version token). `MULTIPUT_E_EXISTS` if it
/// changed, `MULTIPUT_E_NOT_FOUND` if it is gone.
///
/// # Safety
/// As [`multiput_store`].
#[no_mangle]
pub unsafe extern "C" fn multiput_cas(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    value_type: u8,
    format: u8,
    data: *const c_char,
    data_len: usize,
    ttl: u32,
    flags: u32,
    cas: u64,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let v = unsafe { value_arg(value_type, format, data, data_len) }?;
        // A CAS unique (plain) or a version token (replicated): the core's facade decides.
        let (plain, pflags) = c.plain_form(v, flags)?;
        let rep = c
            .cache
            .cas(key, &payload(v, &plain, pflags), cas, ttl)
            .map_err(|e| fail(&e))?;
        c.noted(rep);
        Ok(())
    })
}

/// Store many typed values in one call. `items` is `items_len` bytes of records, each:
/// `u32 key_len (little-endian) | u32 data_len (LE) | u8 value_type | u8 format | key | data`.
/// Pipelined per server, all servers at once. Returns `MULTIPUT_OK` when every item was stored,
/// else the first failure's code; `*out` (if `out` is not null; free with
/// [`multiput_items_free`]) gets one status per item.
///
/// # Safety
/// `client` is live; `items` points to `items_len` bytes; `out` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_set_multi(
    client: *const MultiputClient,
    items: *const c_char,
    items_len: usize,
    ttl: u32,
    flags: u32,
    out: *mut *mut MultiputItems,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let buf = unsafe { bytes(items, items_len, "items") }?;
        if !out.is_null() {
            unsafe { write_out(out, std::ptr::null_mut()) }?;
        }
        let parsed = parse_records(buf)?;
        // A value the convention cannot represent fails the whole call before anything is
        // sent (PECL's setMulti does the same with a payload failure).
        let mut plain = Vec::with_capacity(parsed.len());
        for (_, v) in &parsed {
            plain.push(c.plain_form(*v, flags)?);
        }
        let items: Vec<(&[u8], Payload<'_>)> = parsed
            .iter()
            .zip(&plain)
            .map(|((k, v), (data, fl))| (*k, payload(*v, data, *fl)))
            .collect();
        let results: Vec<Result<Option<Out>, Error>> = c
            .cache
            .set_multi(&items, ttl)
            .into_iter()
            .map(|r| {
                r.map(|rep| {
                    c.noted(rep);
                    Some(Out::default())
                })
            })
            .collect();
        let first = results.iter().find_map(|r| r.as_ref().err()).cloned();
        if !out.is_null() {
            let keys: Vec<&[u8]> = parsed.iter().map(|(k, _)| *k).collect();
            unsafe { write_out(out, boxed_items(keys.into_iter().zip(results))) }?;
        }
        match first {
            Some(e) => Err(fail(&e)),
            None => Ok(()),
        }
    })
}

fn parse_records(buf: &[u8]) -> Result<Vec<(&[u8], In<'_>)>, i32> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let bad = |what: &str| set_error(MULTIPUT_E_ARGUMENT, format!("items: {what}"));
    while at < buf.len() {
        let head = buf
            .get(at..at + 10)
            .ok_or_else(|| bad("truncated record header"))?;
        let kl = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let dl = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let (t, f) = (head[8], head[9]);
        at += 10;
        let key = buf
            .get(at..at + kl)
            .ok_or_else(|| bad("key runs past the end"))?;
        at += kl;
        let data = buf
            .get(at..at + dl)
            .ok_or_else(|| bad("data runs past the end"))?;
        at += dl;
        let v = In::new(t, f, data).map_err(|e| set_error(MULTIPUT_E_ARGUMENT, e.0))?;
        out.push((key, v));
    }
    Ok(out)
}

/// Delete `key`. Plain: `MULTIPUT_E_NOT_FOUND` if it did not exist. Replicated: writes a
/// tombstone on every replica (so a replica that missed the delete cannot bring the value
/// back) and returns `MULTIPUT_OK` whether or not the key existed.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_delete(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        match c.repl() {
            Some(r) => {
                let rep = r.delete(key).map_err(|e| fail(&e))?;
                note_write(&rep);
                Ok(())
            }
            None => match c.plain().delete(key).map_err(|e| fail(&e))? {
                true => Ok(()),
                false => Err(set_error(
                    MULTIPUT_E_NOT_FOUND,
                    "not found: the key does not exist",
                )),
            },
        }
    })
}

/// Delete many keys (separated by `sep`, as [`multiput_get_multi`]). `*out` gets one status
/// per key: `MULTIPUT_OK` deleted, `MULTIPUT_E_NOT_FOUND` (plain mode) it did not exist, or an
/// error.
///
/// # Safety
/// `client` is live; `keys` points to `keys_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_delete_multi(
    client: *const MultiputClient,
    keys: *const c_char,
    keys_len: usize,
    sep: u8,
    out: *mut *mut MultiputItems,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let keys = unsafe { split_keys(keys, keys_len, sep) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let rs: Vec<Result<Option<Out>, Error>> = match c.repl() {
            Some(r) => r
                .delete_multi(&keys)
                .into_iter()
                .map(|r| r.map(|_| Some(Out::default())))
                .collect(),
            None => c
                .plain()
                .delete_multi(&keys)
                .into_iter()
                .map(|r| r.map(|existed| existed.then(Out::default)))
                .collect(),
        };
        unsafe { write_out(out, boxed_items(keys.iter().copied().zip(rs))) }
    })
}

/// Increment (or, with `decrement` non-zero, decrement) a counter by `delta`; the new value goes
/// to `*value`. A missing key is `MULTIPUT_E_NOT_FOUND`, unless `has_initial` is non-zero: then
/// it is created with `initial` (and `ttl`) and `*value` is `initial`, as libmemcached's
/// `increment_with_initial`. Plain: memcached's own `incr`/`decr` (wraps at 2^64, floors at
/// 0). Replicated: an exact CAS-serialized update of an enveloped integer on every replica.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `value` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_incr(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    delta: u64,
    decrement: i32,
    has_initial: i32,
    initial: u64,
    ttl: u32,
    value: *mut u64,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let init = (has_initial != 0).then_some(initial);
        let n = c.incr(key, delta, decrement != 0, init, ttl)?;
        if !value.is_null() {
            unsafe { write_out(value, n) }?;
        }
        Ok(())
    })
}

/// Give `key` a new TTL; `MULTIPUT_E_NOT_FOUND` if it does not exist. Replicated: rewrites the
/// latest value with the new TTL on every replica (a CAS-serialized update).
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_touch(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    ttl: u32,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        match c.repl() {
            Some(r) => {
                let rules = c.rules;
                c.repl_update(r, key, ttl, |cur| {
                    let cur = cur.ok_or(Error::NotFound)?;
                    let o = Out::from_versioned(cur, &rules);
                    let t = ValueType::from_u8(o.vtype).unwrap_or(ValueType::Bytes);
                    Ok(Some((t, Format(o.format), o.payload)))
                })
            }
            None => match c.plain().touch(key, ttl).map_err(|e| fail(&e))? {
                true => Ok(()),
                false => Err(set_error(
                    MULTIPUT_E_NOT_FOUND,
                    "not found: the key does not exist",
                )),
            },
        }
    })
}

/// `flush_all` on every server (`delay` seconds later when non-zero). Returns the first
/// server's failure, if any.
///
/// # Safety
/// `client` is live.
#[no_mangle]
pub unsafe extern "C" fn multiput_flush(client: *const MultiputClient, delay: u32) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let d = (delay > 0).then_some(delay);
        for (_, r) in c.plain().flush_all(d) {
            r.map_err(|e| fail(&e))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Buffers: text and PHP results
// ---------------------------------------------------------------------------------------------

/// A byte buffer the library fills and owns. Zero-initialize it (`MultiputBuffer b = {0};`),
/// pass it to calls that fill it (each call reuses its allocation), and release it once with
/// [`multiput_buffer_free`]. One thread at a time.
#[repr(C)]
pub struct MultiputBuffer {
    /// The bytes (null before the first fill).
    pub data: *mut u8,
    /// Bytes filled.
    pub len: usize,
    /// Allocated size (the library's business).
    pub capacity: usize,
    /// Multi-key PHP results: keys found.
    pub hits: usize,
    /// Keys missing.
    pub misses: usize,
    /// Keys whose server failed.
    pub errors: usize,
    /// Values emitted as `Multiput\Deferred` objects (see [`multiput_get_php`]).
    pub deferred: usize,
    /// The first per-key error code (0 if none); its message is the thread's last error.
    pub first_error: i32,
}

unsafe fn take_buf(b: *mut MultiputBuffer) -> Result<Vec<u8>, i32> {
    if b.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "buffer is null"));
    }
    // SAFETY: the caller passes a zero-initialized buffer or one the library filled.
    let b = unsafe { &mut *b };
    let v = if b.data.is_null() {
        Vec::new()
    } else {
        // SAFETY: data/capacity came from a Vec<u8> this library leaked into the buffer.
        unsafe { Vec::from_raw_parts(b.data, 0, b.capacity) }
    };
    b.data = std::ptr::null_mut();
    b.len = 0;
    b.capacity = 0;
    b.hits = 0;
    b.misses = 0;
    b.errors = 0;
    b.deferred = 0;
    b.first_error = 0;
    Ok(v)
}

fn put_buf(b: *mut MultiputBuffer, mut v: Vec<u8>) {
    if v.capacity() > (1 << 20) && v.len() < v.capacity() / 4 {
        v.shrink_to(v.len().max(4096));
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `b` was checked by take_buf in the same call.
    let b = unsafe { &mut *b };
    b.data = v.as_mut_ptr();
    b.len = v.len();
    b.capacity = v.capacity();
}

/// Release a buffer's bytes and zero it (it can be filled again). Null is ignored.
///
/// # Safety
/// `buffer` is null or a buffer only this library filled.
#[no_mangle]
pub unsafe extern "C" fn multiput_buffer_free(buffer: *mut MultiputBuffer) {
    if !buffer.is_null() {
        let _ = std::panic::catch_unwind(|| unsafe { take_buf(buffer) });
    }
}

/// Get `key` as PHP's `serialize()` of its value into `*out` (see `phpser` in the docs of
/// the crate): `out->len == 0` is a miss. `opts`: [`MULTIPUT_GET_CAS`],
/// [`MULTIPUT_GET_EXTENDED`]. A value PHP must decode itself (PHP-serialized, JSON, igbinary,
/// msgpack, unreadable) is an object of class `Multiput\Deferred` {kind, data, flags} and
/// `out->deferred` is 1.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `out` is a buffer (see
/// [`MultiputBuffer`]).
#[no_mangle]
pub unsafe extern "C" fn multiput_get_php(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    opts: u32,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let mut buf = unsafe { take_buf(out) }?;
        let cas = opts & (MULTIPUT_GET_CAS | MULTIPUT_GET_EXTENDED) != 0;
        let got = c.get_one(key, cas);
        let mut deferred = false;
        let r = match got {
            Ok(Some(g)) => {
                deferred = phpser::got(&mut buf, g, &c.rules, opts & MULTIPUT_GET_EXTENDED != 0);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(fail(&e)),
        };
        put_buf(out, buf);
        // SAFETY: checked by take_buf.
        let o = unsafe { &mut *out };
        o.deferred = usize::from(deferred);
        o.hits = usize::from(o.len > 0);
        o.misses = usize::from(o.len == 0 && r.is_ok());
        r
    })
}

/// Get many keys (separated by `sep`) as PHP's `serialize()` of an array `key => value`, in the
/// order given, into `*out`. Misses are left out (or `null` with
/// [`MULTIPUT_GET_PRESERVE_ORDER`]); keys whose server failed are left out and counted in
/// `out->errors` (`out->first_error` and the thread's last error say why). Values as in
/// [`multiput_get_php`] (`MULTIPUT_GET_EXTENDED` for PECL's extended arrays).
///
/// # Safety
/// `client` is live; `keys` points to `keys_len` bytes; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_get_multi_php(
    client: *const MultiputClient,
    keys: *const c_char,
    keys_len: usize,
    sep: u8,
    opts: u32,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let keys = unsafe { split_keys(keys, keys_len, sep) }?;
        let mut buf = unsafe { take_buf(out) }?;
        let cas = opts & (MULTIPUT_GET_CAS | MULTIPUT_GET_EXTENDED) != 0;
        // Encode straight from the core's results (no intermediate vector per call).
        let rules = c.rules;
        let (hits, misses, errors, deferred, first) = match c.repl() {
            Some(r) => encode_multi(&mut buf, &keys, r.get_multi(&keys), opts, &rules, |v| {
                Got::Decoded(Out::from_versioned(&v, &rules))
            }),
            None => {
                let rs = if cas {
                    c.plain().gets_multi(&keys)
                } else {
                    c.plain().get_multi(&keys)
                };
                encode_multi(&mut buf, &keys, rs, opts, &rules, Got::Plain)
            }
        };
        put_buf(out, buf);
        // SAFETY: checked by take_buf.
        let o = unsafe { &mut *out };
        o.hits = hits;
        o.misses = misses;
        o.errors = errors;
        o.deferred = deferred;
        o.first_error = first;
        Ok(())
    })
}

/// Write `rs` (aligned with `keys`) as PHP's `serialize()` of `key => value`; returns (hits,
/// misses, errors, deferred, first error code).
fn encode_multi<T: HasLen>(
    buf: &mut Vec<u8>,
    keys: &[&[u8]],
    rs: Vec<Result<Option<T>, Error>>,
    opts: u32,
    rules: &PlainRules,
    to_got: impl Fn(T) -> Got,
) -> (usize, usize, usize, usize, i32) {
    let keep_misses = opts & MULTIPUT_GET_PRESERVE_ORDER != 0;
    let extended = opts & MULTIPUT_GET_EXTENDED != 0;
    let (mut hits, mut misses, mut errors, mut deferred, mut first) = (0, 0, 0, 0, 0);
    let mut size = 16;
    for (k, r) in keys.iter().zip(&rs) {
        match r {
            Ok(Some(v)) => {
                hits += 1;
                size += k.len() + 32 + v.len_hint();
            }
            Ok(None) => {
                misses += 1;
                size += k.len() + 16;
            }
            Err(e) => {
                errors += 1;
                if first == 0 {
                    first = fail(e);
                }
            }
        }
    }
    let n = hits + if keep_misses { misses } else { 0 };
    buf.reserve(size);
    buf.extend_from_slice(b"a:");
    phpser::uint(buf, n as u64);
    buf.extend_from_slice(b":{");
    for (k, r) in keys.iter().zip(rs) {
        match r {
            Ok(Some(v)) => {
                phpser::key(buf, k);
                deferred += usize::from(phpser::got(buf, to_got(v), rules, extended));
            }
            Ok(None) if keep_misses => {
                phpser::key(buf, k);
                buf.extend_from_slice(b"N;");
            }
            _ => {}
        }
    }
    buf.push(b'}');
    (hits, misses, errors, deferred, first)
}

/// The payload size of a value read, to size a result buffer once.
trait HasLen {
    fn len_hint(&self) -> usize;
}

impl HasLen for multiput::Value {
    fn len_hint(&self) -> usize {
        self.data.len()
    }
}

impl HasLen for Versioned {
    fn len_hint(&self) -> usize {
        self.data.len() + 64
    }
}

/// `stats [group]` of every server into `*out` as text lines `server\tname\tvalue\n`; a server
/// that failed is one line `server\t\terror message\n`. `group` may be null.
///
/// # Safety
/// `client` is live; `group` is null or NUL-terminated; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_stats(
    client: *const MultiputClient,
    group: *const c_char,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let group = if group.is_null() {
            None
        } else {
            Some(unsafe { text(group, "group") }?)
        };
        let buf = unsafe { take_buf(out) }?;
        per_server_lines(out, buf, c.plain().stats(group), |buf, server, stats| {
            for (k, v) in stats {
                buf.extend_from_slice(format!("{server}\t{k}\t{v}\n").as_bytes());
            }
        });
        Ok(())
    })
}

/// Write one answer per server into `out` (`line` for a success, `server\t\terror\n` for a
/// failure, whose error also becomes the last error) and count the failures in `errors`.
fn per_server_lines<T>(
    out: *mut MultiputBuffer,
    mut buf: Vec<u8>,
    results: Vec<(String, Result<T, Error>)>,
    line: impl Fn(&mut Vec<u8>, &str, T),
) {
    let mut errors = 0;
    for (server, r) in results {
        match r {
            Ok(v) => line(&mut buf, &server, v),
            Err(e) => {
                errors += 1;
                fail(&e);
                let msg = e.to_string().replace(['\n', '\t'], " ");
                buf.extend_from_slice(format!("{server}\t\t{msg}\n").as_bytes());
            }
        }
    }
    put_buf(out, buf);
    // SAFETY: `out` was checked by `take_buf`, which produced `buf`.
    unsafe { (*out).errors = errors };
}

/// The `version` of every server into `*out` as lines `server\tversion\n`, or
/// `server\t\terror message\n` for a server that failed.
///
/// # Safety
/// `client` is live; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_server_versions(
    client: *const MultiputClient,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let buf = unsafe { take_buf(out) }?;
        per_server_lines(out, buf, c.plain().version(), |buf, server, v| {
            buf.extend_from_slice(format!("{server}\t{v}\n").as_bytes());
        });
        Ok(())
    })
}

/// Counters per server as lines `server\thits\tmisses\tsets\terrors\ttimeouts\tdown_events\t
/// repairs\tstale\n` (tab-separated), then a line `total\t...` with the sums and a last column
/// of replica disagreements.
///
/// # Safety
/// `client` is live; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_metrics(
    client: *const MultiputClient,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let mut buf = unsafe { take_buf(out) }?;
        let m = c.plain().metrics();
        let line = |name: &str, x: &multiput::metrics::Counters| {
            format!(
                "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                x.hits, x.misses, x.sets, x.errors, x.timeouts, x.down_events, x.repairs, x.stale
            )
        };
        for (s, x) in &m.servers {
            buf.extend_from_slice(format!("{}\n", line(s, x)).as_bytes());
        }
        let t = line("total", &m.total);
        buf.extend_from_slice(format!("{t}\t{}\n", m.total.disagreements).as_bytes());
        put_buf(out, buf);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Servers and placement
// ---------------------------------------------------------------------------------------------

/// How many servers the client has.
///
/// # Safety
/// `client` is null (0 is returned) or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_server_count(client: *const MultiputClient) -> usize {
    if client.is_null() {
        return 0;
    }
    unsafe { &*client }.addresses.len()
}

/// `host:port` of server `index` (configuration order), owned by the client; null when out of
/// range.
///
/// # Safety
/// `client` is null or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_server_address(
    client: *const MultiputClient,
    index: usize,
) -> *const c_char {
    if client.is_null() {
        return std::ptr::null();
    }
    unsafe { &*client }
        .addresses
        .get(index)
        .map_or(std::ptr::null(), |a| a.as_ptr())
}

/// The servers holding `key`'s copies, primary first: up to `cap` indexes into `indexes`, the
/// count to `*count` (1 in plain mode: the ring owner; the replica count in replicated mode).
/// Placement ignores the key prefix, as libmemcached does, and takes any non-empty bytes: the
/// key rules are about what can be sent, and libmemcached (PECL `getServerByKey`, the
/// `*ByKey` server keys) places any key.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `indexes` holds `cap` entries; `count`
/// is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_servers_for(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    indexes: *mut usize,
    cap: usize,
    count: *mut usize,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        if indexes.is_null() && cap > 0 {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "indexes is null"));
        }
        if key.is_empty() {
            return Err(fail(&Error::InvalidKey {
                reason: multiput::error::KeyProblem::Empty,
            }));
        }
        let cl = c.plain().cluster();
        let list = match c.repl() {
            Some(r) => {
                let p = r.policy();
                cl.replicas_for(key, p.replicas, p.failover, multiput::driver::mono_ms())
            }
            None => cl.replicas_for(key, 1, false, multiput::driver::mono_ms()),
        };
        for (i, s) in list.iter().take(cap).enumerate() {
            // SAFETY: `indexes` holds `cap` entries.
            unsafe { *indexes.add(i) = *s };
        }
        unsafe { write_out(count, list.len()) }
    })
}

/// The replica count of a replicated client, 0 for a plain one.
///
/// # Safety
/// `client` is null or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_replicas(client: *const MultiputClient) -> usize {
    if client.is_null() {
        return 0;
    }
    unsafe { &*client }
        .repl()
        .as_ref()
        .map_or(0, |r| r.policy().replicas)
}

// ---------------------------------------------------------------------------------------------
// CAS updates
// ---------------------------------------------------------------------------------------------

/// Leave the key as it is.
pub const MULTIPUT_UPDATE_KEEP: i32 = 0;
/// Store the value in the update.
pub const MULTIPUT_UPDATE_SET: i32 = 1;
/// Delete the key (if it still holds the value that was read).
pub const MULTIPUT_UPDATE_DELETE: i32 = 2;

/// What a CAS-update callback wants done. `data` must stay valid until the callback is called
/// again or [`multiput_cas_update`] returns (the library copies it right away).
#[repr(C)]
pub struct MultiputUpdate {
    /// `MULTIPUT_UPDATE_KEEP` (the default), `_SET` or `_DELETE`.
    pub action: i32,
    /// For `_SET`: a `MULTIPUT_TYPE_*`.
    pub value_type: u8,
    /// For `_SET`: a `MULTIPUT_FORMAT_*`.
    pub format: u8,
    /// For `_SET`: the canonical payload.
    pub data: *const c_char,
    /// Its length.
    pub data_len: usize,
}

/// A CAS-update callback: `current` is the latest value (null when the key is missing; valid
/// only during the call), `update` (zeroed: keep) is filled in by the callback. Return 0 to go
/// on, non-zero to abort the update with [`MULTIPUT_E_CALLBACK`]. It may be called several
/// times (once per conflict) and must only compute.
pub type MultiputUpdateFn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        current: *const MultiputItem,
        update: *mut MultiputUpdate,
    ) -> i32,
>;

/// Read-modify-write `key` without losing concurrent updates: read it, call `f`, write the
/// result with compare-and-swap (or `add` when the key is missing), and on a conflict start
/// over (jittered backoff, at most `cas_attempts` reads within `cas_deadline_ms`). Replicated
/// mode: serialized by CAS on the key's primary replica, then written to the others.
/// `*outcome` (if not null) gets the action taken (`MULTIPUT_UPDATE_*`), `*attempts` the reads
/// it took. `MULTIPUT_E_CAS_RETRIES` when it gave up; `MULTIPUT_E_CALLBACK` when `f` aborted.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `f` is a valid function; `outcome` and
/// `attempts` are null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_cas_update(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    ttl: u32,
    f: MultiputUpdateFn,
    ctx: *mut c_void,
    outcome: *mut i32,
    attempts: *mut u32,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let f = f.ok_or_else(|| set_error(MULTIPUT_E_ARGUMENT, "callback is null"))?;
        // Call the callback on a decoded value; returns what to do, or an error code.
        let aborted: Cell<Option<i32>> = Cell::new(None);
        let ask = |cur: Option<&Out>| -> Option<(i32, Option<Owned>)> {
            let holder = cur.map(|o| item_of(key, MULTIPUT_OK, Some(o)));
            let cur_ptr = holder
                .as_ref()
                .map_or(std::ptr::null(), |(i, _, _)| i as *const _);
            let mut up = MultiputUpdate {
                action: MULTIPUT_UPDATE_KEEP,
                value_type: 0,
                format: 0,
                data: std::ptr::null(),
                data_len: 0,
            };
            // SAFETY: the caller's callback, with pointers valid for the call.
            let rc = unsafe { f(ctx, cur_ptr, &mut up) };
            if rc != 0 {
                aborted.set(Some(set_error(
                    MULTIPUT_E_CALLBACK,
                    format!("the update callback aborted (returned {rc})"),
                )));
                return None;
            }
            match up.action {
                MULTIPUT_UPDATE_SET => {
                    match unsafe { value_arg(up.value_type, up.format, up.data, up.data_len) } {
                        Ok(v) => Some((MULTIPUT_UPDATE_SET, Some(own(v)))),
                        Err(code) => {
                            aborted.set(Some(code));
                            None
                        }
                    }
                }
                MULTIPUT_UPDATE_DELETE => Some((MULTIPUT_UPDATE_DELETE, None)),
                MULTIPUT_UPDATE_KEEP => Some((MULTIPUT_UPDATE_KEEP, None)),
                other => {
                    aborted.set(Some(set_error(
                        MULTIPUT_E_ARGUMENT,
                        format!("the update callback set an unknown action {other}"),
                    )));
                    None
                }
            }
        };
        let opts = CasOptions { ttl, ..c.cas };
        let (result, n) = match c.repl() {
            Some(r) => {
                let rules = c.rules;
                let res = r.cas_update(key, opts, |cur| {
                    let o = cur.map(|v| Out::from_versioned(v, &rules));
                    match ask(o.as_ref()) {
                        Some((MULTIPUT_UPDATE_SET, Some((t, fmt, p)))) => Update::Typed(t, fmt, p),
                        Some((MULTIPUT_UPDATE_DELETE, _)) => Update::Delete,
                        _ => Update::Keep,
                    }
                });
                match res {
                    Ok((outcome, report)) => {
                        note_write(&report);
                        (Ok(outcome.clone()), outcome.attempts())
                    }
                    Err(e) => (Err(e), 0),
                }
            }
            None => {
                // The core's plain cas_update stores with one flags value per call, but a
                // typed value's flags are known only once the callback has answered: run it
                // with a guess and, if the answer needs other flags, start over with them.
                let mut want_flags = 0u32;
                let mut total = 0;
                let mut last = Err(Error::Config("no attempt made".into()));
                for _ in 0..4 {
                    let mut mismatch: Option<u32> = None;
                    let rules = c.rules;
                    let guess = want_flags;
                    let res = c.plain().cas_update(
                        key,
                        CasOptions {
                            flags: guess,
                            ..opts
                        },
                        |cur| {
                            let o = cur.map(|v| Out::from_value(v, &rules));
                            match ask(o.as_ref()) {
                                Some((MULTIPUT_UPDATE_SET, Some((t, fmt, p)))) => {
                                    let v = In {
                                        vtype: t,
                                        format: fmt,
                                        payload: &p,
                                    };
                                    match rules.encode(v, 0) {
                                        Ok((data, fl)) if fl == guess => Update::Set(data),
                                        Ok((_, fl)) => {
                                            mismatch = Some(fl);
                                            Update::Keep
                                        }
                                        Err(e) => {
                                            aborted.set(Some(set_error(MULTIPUT_E_VALUE, e.0)));
                                            Update::Keep
                                        }
                                    }
                                }
                                Some((MULTIPUT_UPDATE_DELETE, _)) => Update::Delete,
                                _ => Update::Keep,
                            }
                        },
                    );
                    total += res.as_ref().map_or(0, CasOutcome::attempts);
                    last = res;
                    match mismatch {
                        Some(fl) if aborted.get().is_none() => want_flags = fl,
                        _ => break,
                    }
                }
                (last, total)
            }
        };
        if let Some(code) = aborted.get() {
            return Err(code);
        }
        let outcome_code = match result.map_err(|e| fail(&e))? {
            CasOutcome::Stored { .. } => MULTIPUT_UPDATE_SET,
            CasOutcome::Unchanged { .. } => MULTIPUT_UPDATE_KEEP,
            CasOutcome::Deleted { .. } => MULTIPUT_UPDATE_DELETE,
        };
        if !outcome.is_null() {
            unsafe { write_out(outcome, outcome_code) }?;
        }
        if !attempts.is_null() {
            unsafe { write_out(attempts, n) }?;
        }
        Ok(())
    })
}

/// A `get_or_set` loader: fills `value` (`value_type` bytes, text or string; `data` valid until
/// the call returns) and returns 0, or non-zero to fail the call with [`MULTIPUT_E_CALLBACK`].
pub type MultiputLoadFn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, value: *mut MultiputUpdate) -> i32>;

/// Get `key`, or on a miss load it once and store it (miss-storm protection, see
/// docs/recipes.md): concurrent callers in this process share one load; across processes one
/// fills (a short `add` lock on `<key>:fill`) while the others wait for its value; the stored
/// TTL gets ±10% jitter. `*out` is the value found or loaded (free with
/// [`multiput_item_free`]). Plain and replicated alike (replicated: read and stored on the
/// key's replicas, typed as the loader says); a plain client stores the loaded value as a
/// plain string (flags 0), so its loader returns bytes or text.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `f` is a valid function; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_get_or_set(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    ttl: u32,
    f: MultiputLoadFn,
    ctx: *mut c_void,
    out: *mut *mut MultiputItem,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let f = f.ok_or_else(|| set_error(MULTIPUT_E_ARGUMENT, "loader is null"))?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let loader = || -> Result<Fresh, String> {
            let mut v = MultiputUpdate {
                action: MULTIPUT_UPDATE_SET,
                value_type: 0,
                format: 0,
                data: std::ptr::null(),
                data_len: 0,
            };
            // SAFETY: the caller's loader, with a pointer valid for the call.
            let rc = unsafe { f(ctx, &mut v) };
            if rc != 0 {
                return Err(format!("the loader returned {rc}"));
            }
            let v = unsafe { value_arg(v.value_type, v.format, v.data, v.data_len) }
                .map_err(|_| "the loader's value is invalid".to_string())?;
            if c.repl().is_none() && !matches!(v.vtype, ValueType::Bytes | ValueType::Text) {
                return Err("a plain get_or_set stores strings only (bytes or text)".into());
            }
            Ok(Fresh {
                data: v.payload.to_vec(),
                flags: 0,
                typed: Some((v.vtype, v.format)),
            })
        };
        let opts = multiput::recipes::FillOptions::default();
        let item = match c
            .cache
            .get_or_set(key, ttl, opts, loader)
            .map_err(|e| fail(&e))?
        {
            CoreGot::Plain(v) => Out::from_value(&v, &c.rules),
            CoreGot::Replicated(v) => Out::from_versioned(&v, &c.rules),
        };
        unsafe { write_out(out, boxed_item(key, &item)) }
    })
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

/// A held lock (see docs/recipes.md): released by [`multiput_lock_release`], or when freed.
/// One thread at a time.
pub struct MultiputLock {
    lock: Lock<Client>,
    token: CString,
}

/// Acquire the lock `name`: an `add` of a unique owner token on the name's ring owner (the
/// primary, in replicated mode), retried with jittered backoff for up to `wait_ms`.
/// `MULTIPUT_E_LOCK_NOT_ACQUIRED` when someone else held it the whole time; the server's error
/// (e.g. `MULTIPUT_E_SERVER_DOWN`) if its server cannot be reached — a lock is never taken on
/// another server. `ttl` (seconds, >= 1) bounds how long a crashed holder keeps it. With
/// `fencing` non-zero, also takes a fencing token ([`multiput_lock_fence`]).
///
/// # Safety
/// `client` is live; `name` points to `name_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock(
    client: *const MultiputClient,
    name: *const c_char,
    name_len: usize,
    ttl: u32,
    wait_ms: u64,
    fencing: i32,
    out: *mut *mut MultiputLock,
) -> i32 {
    // SAFETY: as this function's contract.
    unsafe { lock(client, name, name_len, ttl, wait_ms, fencing, None, out) }
}

/// [`multiput_lock`] on a majority of the name's first `replicas` servers (its ring
/// preference list) instead of its one owner, so losing one server does not drop the lock:
/// acquired when a majority stored the token with time left of its TTL; release and extend
/// act on every server held and succeed with a majority.
///
/// # Safety
/// As [`multiput_lock`].
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_quorum(
    client: *const MultiputClient,
    name: *const c_char,
    name_len: usize,
    ttl: u32,
    wait_ms: u64,
    fencing: i32,
    replicas: u32,
    out: *mut *mut MultiputLock,
) -> i32 {
    // SAFETY: as this function's contract.
    unsafe {
        lock(
            client,
            name,
            name_len,
            ttl,
            wait_ms,
            fencing,
            Some(replicas as usize),
            out,
        )
    }
}

/// [`multiput_lock`] and [`multiput_lock_quorum`]: the core's lock (on the name's owner, or
/// with `quorum` on a majority of its first `quorum` replicas).
///
/// # Safety
/// As [`multiput_lock`].
#[allow(clippy::too_many_arguments)]
unsafe fn lock(
    client: *const MultiputClient,
    name: *const c_char,
    name_len: usize,
    ttl: u32,
    wait_ms: u64,
    fencing: i32,
    quorum: Option<usize>,
    out: *mut *mut MultiputLock,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let name = unsafe { key_arg(name, name_len) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let mut opts = LockOptions::new(ttl, Duration::from_millis(wait_ms));
        if ttl == 0 {
            opts.ttl = 0;
        }
        if fencing != 0 {
            opts = opts.fencing();
        }
        let lock = c.cache.lock(name, opts, quorum).map_err(|e| fail(&e))?;
        let token = CString::new(lock.token()).unwrap_or_default();
        unsafe { write_out(out, Box::into_raw(Box::new(MultiputLock { lock, token }))) }
    })
}

unsafe fn lock_mut<'a>(l: *mut MultiputLock) -> Result<&'a mut MultiputLock, i32> {
    if l.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "lock is null"));
    }
    // SAFETY: the caller passes a live lock.
    Ok(unsafe { &mut *l })
}

/// Release the lock if this holder still owns it (compare-and-delete on what it stored).
/// `*released` = 1 released; 0 it had expired and may belong to someone else now (left alone),
/// or was already released.
///
/// # Safety
/// `lock` is live; `released` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_release(lock: *mut MultiputLock, released: *mut i32) -> i32 {
    run(|| {
        let l = unsafe { lock_mut(lock) }?;
        let r = l.lock.release().map_err(|e| fail(&e))?;
        if !released.is_null() {
            unsafe { write_out(released, i32::from(r)) }?;
        }
        Ok(())
    })
}

/// Give the lock a new TTL if this holder still owns it: `*held` = 1 extended, 0 no longer ours.
///
/// # Safety
/// `lock` is live; `held` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_extend(
    lock: *mut MultiputLock,
    ttl: u32,
    held: *mut i32,
) -> i32 {
    run(|| {
        let l = unsafe { lock_mut(lock) }?;
        let r = l.lock.extend(ttl).map_err(|e| fail(&e))?;
        if !held.is_null() {
            unsafe { write_out(held, i32::from(r)) }?;
        }
        Ok(())
    })
}

/// The fencing token (larger than every earlier holder's) into `*fence`; returns 1 if the lock
/// has one (it was taken with `fencing`), 0 if not or `lock` is null.
///
/// # Safety
/// `lock` is null or live; `fence` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_fence(lock: *const MultiputLock, fence: *mut u64) -> i32 {
    if lock.is_null() {
        return 0;
    }
    match unsafe { &*lock }.lock.fence() {
        Some(f) => {
            if !fence.is_null() {
                unsafe { *fence = f };
            }
            1
        }
        None => 0,
    }
}

/// This holder's owner token (what is stored under the lock's name), owned by the lock.
///
/// # Safety
/// `lock` is null (null is returned) or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_token(lock: *const MultiputLock) -> *const c_char {
    if lock.is_null() {
        return std::ptr::null();
    }
    unsafe { &*lock }.token.as_ptr()
}

/// 1 until a release (or a failed extend) says the lock is no longer ours.
///
/// # Safety
/// `lock` is null (0) or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_is_held(lock: *const MultiputLock) -> i32 {
    if lock.is_null() {
        return 0;
    }
    i32::from(unsafe { &*lock }.lock.is_held())
}

/// Free a lock, releasing it first if it is still held (errors ignored: an unreleased lock
/// expires after its TTL). Null is ignored.
///
/// # Safety
/// `lock` is null or live and not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_free(lock: *mut MultiputLock) {
    if !lock.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: per the contract above.
            drop(unsafe { Box::from_raw(lock) })
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_thread_safe() {
        fn is<T: Send + Sync>() {}
        is::<MultiputClient>();
    }

    /// Random bytes never make the record parser, the decompressors or the value checks panic.
    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && buf.len() >= 10 {
                // plausible headers with small lengths
                buf[0] = (next() % 8) as u8;
                buf[1..4].fill(0);
                buf[4] = (next() % 8) as u8;
                buf[5..8].fill(0);
                buf[8] = (next() % 7) as u8;
            }
            let _ = parse_records(&buf);
            let _ = multiput::compress::fastlz_decompress(&buf, 256);
            let _ = multiput::compress::pecl_decompress(&buf, 0x50);
            let _ = multiput::compress::pecl_decompress(&buf, 0x30);
            let rules = PlainRules {
                convention: Convention::Php,
                compress_threshold: 0,
            };
            let _ = rules.decode(&buf, (next() % 0x100) as u32);
            let _ = In::new((next() % 18) as u8, (next() % 4) as u8, &buf);
        }
    }

    /// The core's multi-get alone, and through the PHP entry point, against a running server:
    /// `MULTIPUT_BENCH_SERVER=127.0.0.1:PORT taskset -c 0 cargo test --release -p multiput-ffi
    /// --lib -- --ignored --nocapture multi_get_cost` (keys bench:key:0..99 must exist).
    #[test]
    #[ignore]
    fn multi_get_cost() {
        let Ok(server) = std::env::var("MULTIPUT_BENCH_SERVER") else {
            return;
        };
        let opts = CString::new(format!("servers={server}")).unwrap();
        let mut c = std::ptr::null_mut();
        assert_eq!(unsafe { multiput_client_open(opts.as_ptr(), &mut c) }, 0);
        let keys: Vec<String> = (0..100).map(|i| format!("bench:key:{i}")).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let joined = keys.join("\n");
        let client = unsafe { &*c };
        let n = 20_000u32;
        for round in 0..2 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                assert_eq!(client.plain().get_multi(&refs).len(), 100);
            }
            let core = t.elapsed() / n;
            let mut b = MultiputBuffer {
                data: std::ptr::null_mut(),
                len: 0,
                capacity: 0,
                hits: 0,
                misses: 0,
                errors: 0,
                deferred: 0,
                first_error: 0,
            };
            let t = std::time::Instant::now();
            for _ in 0..n {
                let rc = unsafe {
                    multiput_get_multi_php(
                        c,
                        joined.as_ptr().cast(),
                        joined.len(),
                        b'\n',
                        0,
                        &mut b,
                    )
                };
                assert_eq!(rc, 0);
                assert_eq!(b.hits, 100);
            }
            let php = t.elapsed() / n;
            unsafe { multiput_buffer_free(&mut b) };
            println!("round {round}: core get_multi {core:?}, multiput_get_multi_php {php:?} per 100 keys");
        }
        unsafe { multiput_client_free(c) };
    }
}
