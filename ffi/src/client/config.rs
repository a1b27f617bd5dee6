//! Configuration.

use super::*;

/// A client configuration under construction: create it with [`multiput_config_new`], set
/// options with [`multiput_config_set`], build clients with [`multiput_client_new`], free it
/// with [`multiput_config_free`].
#[derive(Debug, Clone)]
pub struct MultiputConfig {
    /// The core's client settings (servers, ring, timeouts, sizes, key prefix, ...), set
    /// field by field by [`MultiputConfig::set`] and checked by the core in `build`.
    pub(crate) core: multiput::Config,
    pub(crate) policy: Policy,
    /// `write`/`read` as given: `quorum` (a majority) depends on `replicas`, which may be set
    /// later, so they are resolved by [`Policy`]'s parsers in `build`.
    pub(crate) write: Option<String>,
    pub(crate) read: Option<String>,
    pub(crate) replicated: bool,
    pub(crate) rules: PlainRules,
    pub(crate) cas: CasOptions,
}

impl Default for MultiputConfig {
    fn default() -> Self {
        MultiputConfig {
            core: multiput::Config::default(),
            policy: Policy {
                replicas: 1,
                ..Policy::default()
            },
            write: None,
            read: None,
            replicated: false,
            rules: PlainRules {
                convention: Convention::multiput(Family::Php),
                compress_threshold: 0,
            },
            cas: CasOptions::default(),
        }
    }
}

pub(crate) fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("option {name}: {v:?} is not a valid number"))
}

pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "option {name}: {v:?} is not a boolean (1/0, true/false)"
        )),
    }
}

impl MultiputConfig {
    pub(crate) fn set(&mut self, name: &str, v: &str) -> Result<(), String> {
        let ms = |v: &str| parse_num::<u64>(name, v).map(Duration::from_millis);
        match name.trim() {
            "servers" => {
                self.core.servers = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<multiput::ServerSpec>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?;
            }
            "mode" | "distribution" => self.core.ring_mode = v.parse().map_err(|e: Error| e.to_string())?,
            "protocol" => {
                self.core.protocol = match v.trim().to_ascii_lowercase().as_str() {
                    "auto" => ProtocolChoice::Auto,
                    "text" => ProtocolChoice::Text,
                    "meta" => ProtocolChoice::Meta,
                    _ => return Err(format!("option protocol: {v:?} is not auto, text or meta")),
                }
            }
            "timeout_ms" => self.core.timeout = ms(v)?,
            "connect_timeout_ms" => self.core.connect_timeout = ms(v)?,
            "retry_ms" => self.core.retry_interval = ms(v)?,
            "failure_limit" => self.core.failure_limit = parse_num(name, v)?,
            "max_value_size" => self.core.max_value_size = parse_num(name, v)?,
            "pool_size" => self.core.blocking_pool_size = parse_num(name, v)?,
            "tcp_nodelay" => self.core.tcp_nodelay = parse_bool(name, v)?,
            "binary_keys" => self.core.binary_keys = parse_bool(name, v)?,
            "prefix" => self.core.key_prefix = v.as_bytes().to_vec(),
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
                self.rules.convention = Convention::parse(v, Family::Php).map_err(|e| e.to_string())?;
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

    pub(crate) fn build(&self) -> Result<MultiputClient, Error> {
        let config = self.core.clone();
        config.validate()?;
        let plain = Client::from_config(config)?;
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
}

/// A new configuration with the core's defaults (no servers; plain mode with multiput's own
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
/// | `convention` | plain-value flags: `multiput` (multiput's own, read with their type by every binding; values without them read as PECL writes them), `pecl` (PECL memcached's) or `pylibmc` (pylibmc/pymemcache's) | `multiput` |
/// | `compress_threshold` | compress plain values of at least this many bytes (`multiput`: a zlib stream every binding reads; `pecl`: as PECL does); 0 never | 0 |
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
