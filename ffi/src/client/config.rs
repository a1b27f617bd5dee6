//! Configuration.

use super::*;
use multiput::setup::Setup;

/// A client configuration under construction: create it with [`multiput_config_new`], set
/// options with [`multiput_config_set`], build clients with [`multiput_client_new`], free it
/// with [`multiput_config_free`]. The options are the core's ([`multiput::setup`]); this ABI
/// keeps two spellings of its own (see [`multiput_config_set`]).
#[derive(Debug, Clone)]
pub struct MultiputConfig {
    setup: Setup,
}

impl Default for MultiputConfig {
    fn default() -> Self {
        let mut setup = Setup::new(Family::Php);
        // The ABI's default is plain values unless `replicas` asks for copies.
        let _ = setup.set("mode", "plain");
        MultiputConfig { setup }
    }
}

impl MultiputConfig {
    /// Set one option; the error is the message for the last-error text.
    pub(crate) fn set(&mut self, name: &str, v: &str) -> Result<(), String> {
        match name.trim() {
            // This ABI's `mode` has always been the ring's (PECL's distribution).
            "mode" => self.setup.set("ring", v),
            // `replicas` 0: plain values; N >= 1: N enveloped copies (1 on a fleet migrating
            // to replication).
            "replicas" if v.trim() == "0" => self.setup.set("mode", "plain"),
            "replicas" => self
                .setup
                .set("mode", "replicated")
                .and_then(|s| s.set("replicas", v)),
            other => self.setup.set(other, v),
        }
        .map(|_| ())
        .map_err(|e| match e {
            Error::Config(m) => m,
            e => e.to_string(),
        })
    }

    pub(crate) fn build(&self) -> Result<MultiputClient, Error> {
        let built = self.setup.build()?;
        let plain = Client::from_config(built.config)?;
        let repl = built
            .policy
            .map(|p| ReplicatedClient::new(plain.clone(), p))
            .transpose()?;
        let cl = plain.cluster();
        let addresses = (0..cl.len())
            .map(|i| CString::new(cl.name(i)).unwrap_or_default())
            .collect();
        Ok(MultiputClient {
            cache: Cache::new(plain, None)?.with_replicated(repl),
            rules: PlainRules {
                convention: built.convention,
                compress_threshold: built.compress_threshold,
            },
            cas: built.cas,
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
/// [`MULTIPUT_E_CONFIG`] with a message naming the problem. The options are the core's
/// (`multiput::setup`, where every binding's options are parsed), with this ABI's `mode` (the
/// ring) and `replicas` (0 = plain) as below:
///
/// | name | value | default |
/// | --- | --- | --- |
/// | `servers` | `host[:port[:weight]]` separated by `,`, `;` or spaces (replaces the list; hosts hashed as written) | none |
/// | `mode` | `libketama_compatible`, `ketama_md5`, `modula` (PECL's default distribution) or `rendezvous` (pymemcache's HashClient) | `libketama_compatible` |
/// | `ring` | the same as `mode` | |
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
/// | `tls` | 1: TLS to every server (memcached `-Z`) | 0 |
/// | `tls_ca` | PEM file of the CAs that sign the servers' certificates (implies `tls`) | the system's trust store |
/// | `tls_cert`, `tls_key` | PEM files of a client certificate and key, for servers that verify clients (imply `tls`) | none |
/// | `tls_server_name` | the name the servers' certificates must carry (implies `tls`) | each server's host |
/// | `username`, `password` | memcached's ASCII authentication (`-Y`), sent first on every connection | none |
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
