//! The ketama ring (libmemcached's placement, both consistent modes), as the core computes it.

use js_sys::{Array, Uint32Array};
use multiput::{Error, RingMode, ServerSpec};
use wasm_bindgen::prelude::*;

use crate::js;

/// Server specs from JavaScript: strings (`host`, `host:port`, `host:port:weight`,
/// `[v6]:port:weight`) or objects `{host, port?, weight?}` (port 0 = 11211, weight 0 = 1, as
/// libmemcached).
pub(crate) fn specs(servers: &Array) -> Result<Vec<ServerSpec>, JsValue> {
    servers
        .iter()
        .map(|s| {
            if let Some(text) = s.as_string() {
                return text.parse::<ServerSpec>().map_err(|e| js::error(&e));
            }
            let host = js::get(&s, "host").as_string().ok_or_else(|| {
                js::error(&Error::Config(
                    "a server is a string \"host:port[:weight]\" or an object {host, port, weight}"
                        .into(),
                ))
            })?;
            let num = |k: &str| js::get(&s, k).as_f64().unwrap_or(0.0);
            let port = num("port");
            let weight = num("weight");
            if !(0.0..=65535.0).contains(&port) || !(0.0..=u32::MAX as f64).contains(&weight) {
                return Err(js::error(&Error::Config(format!(
                    "server {host:?}: port or weight out of range"
                ))));
            }
            Ok(ServerSpec {
                host,
                port: port as u16,
                weight: weight as u32,
            })
        })
        .collect()
}

pub(crate) fn mode(v: Option<String>) -> Result<RingMode, JsValue> {
    match v {
        None => Ok(RingMode::LibketamaCompatible),
        Some(s) => s.parse().map_err(|e: Error| js::error(&e)),
    }
}

/// A ketama ring over a server list, in configuration order. Pure computation: it never
/// resolves or connects to the hosts.
#[wasm_bindgen]
pub struct Ring {
    inner: multiput::Ring,
}

#[wasm_bindgen]
impl Ring {
    /// `mode`: `libketama_compatible` (default; php-memcached OPT_LIBKETAMA_COMPATIBLE,
    /// pylibmc ketama_weighted) or `ketama_md5`.
    #[wasm_bindgen(constructor)]
    pub fn new(servers: &Array, mode: Option<String>) -> Result<Ring, JsValue> {
        let specs = specs(servers)?;
        Ok(Ring {
            inner: multiput::Ring::new(&specs, self::mode(mode)?),
        })
    }

    /// The index of the server that owns `key` (its bytes as hashed: no prefix), or
    /// `undefined` for an empty ring.
    #[wasm_bindgen(js_name = serverFor)]
    pub fn server_for(&self, key: &[u8]) -> Option<u32> {
        self.inner.server_for(key).map(|i| i as u32)
    }

    /// The first `n` distinct servers clockwise from `key` (the first is `serverFor`): where
    /// multiput places a key's replicas.
    #[wasm_bindgen(js_name = preferenceList)]
    pub fn preference_list(&self, key: &[u8], n: u32) -> Uint32Array {
        let l: Vec<u32> = self
            .inner
            .preference_list(key, n as usize)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        Uint32Array::from(&l[..])
    }

    /// `host:port` of server `i`.
    pub fn address(&self, i: u32) -> Option<String> {
        self.inner
            .servers()
            .get(i as usize)
            .map(ServerSpec::address)
    }

    /// The number of servers.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.inner.len() as u32
    }

    /// `libketama_compatible` or `ketama_md5`.
    #[wasm_bindgen(getter)]
    pub fn mode(&self) -> String {
        self.inner.mode().as_str().into()
    }
}
