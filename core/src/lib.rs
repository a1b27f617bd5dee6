//! multiput is a memcached client core: a sans-I/O logic layer (text and meta protocol codec,
//! a ketama ring that places keys exactly as libmemcached does, key rules, server health) and two
//! thin I/O drivers over it, an async one on tokio and a blocking one for callers without a
//! runtime. It is not a server, a proxy or a cache policy: it speaks to memcached.

mod api;
pub mod blocking;
#[cfg(feature = "tokio")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod error;
pub mod health;
pub mod key;
pub mod ops;
pub mod options;
pub mod protocol;
pub mod ring;
pub mod server;

#[cfg(feature = "tokio")]
pub use client::{Client, ClientBuilder};
pub use config::{Config, ConfigBuilder, ProtocolChoice};
pub use error::{Error, ErrorKind, Result};
pub use ops::Value;
pub use options::StoreOptions;
pub use protocol::text::StoreMode;
pub use ring::{Ring, RingMode};
pub use server::ServerSpec;
