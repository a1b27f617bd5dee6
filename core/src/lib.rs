//! multiput is a memcached client core: a sans-I/O logic layer (text and meta protocol codec,
//! a ketama ring that places keys exactly as libmemcached does, key rules, server health) and two
//! thin I/O drivers over it, an async one on tokio and a blocking one for callers without a
//! runtime. It is not a server, a proxy or a cache policy: it speaks to memcached.
//!
//! It is the one core behind multiput's Rust, Python, PHP and Node bindings, so that every app
//! in a mixed fleet agrees on where a key lives, how a reply is read and when a server counts as
//! down.
//!
//! # Layers
//!
//! Two folders, imports pointing one way (`scripts/check-layers.sh` keeps the logic layer free
//! of I/O in CI):
//!
//! - **Logic, no I/O** ([`logic`]) — [`protocol`] (encoders and an incremental decoder that
//!   never panics and bounds every allocation), [`ring`] (libmemcached's ketama in both
//!   consistent modes), [`key`] (key rules, checked before anything is sent), [`health`]
//!   (failure counting and retry intervals, with time passed in), [`ops`] (what each call sends
//!   and what its reply means), [`cluster`] (routing a call to its server), [`replication`] and
//!   [`envelope`] (which copy wins, what is repaired), [`values`] (each language's value
//!   conventions), and [`machine`]: every multi-step behaviour (CAS update, locks, the
//!   `get_or_set` fill, increment-with-initial, replicated reads, writes and read-modify-writes)
//!   as a step machine that says what to send, how long to wait and when to ask the caller,
//!   with time and randomness passed in. This is what the WASM build exports.
//! - **Drivers** ([`driver`]) — [`Client`] (async, tokio; feature `tokio`, on by default)
//!   pipelines every task's requests over a few connections per server;
//!   [`blocking::Client`] pools blocking connections for threads; both run the machines with
//!   one `drive` loop and expose the same calls with the same meaning. [`ReplicatedClient`]
//!   wraps either; [`blocking::Cache`] is the one mode-aware facade the bindings sit on.
//!   [`fork`] keeps per-process state safe across `fork()`.

//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), multiput::Error> {
//! use multiput::{Client, StoreOptions};
//!
//! let client = Client::builder()
//!     .servers(["127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"])
//!     .timeout(std::time::Duration::from_millis(250))
//!     .build()?;
//!
//! client.set("user:42", "Ada", 300).await?;          // stored, or an error: never silent
//! client.add("user:42", "Bob", 300).await.unwrap_err(); // Error::NotStored
//! let v = client.get("user:42").await?.expect("a hit");
//! assert_eq!(&v.data[..], b"Ada");
//!
//! // CAS: read, change, write back only if nobody else wrote in between.
//! let cur = client.gets("user:42").await?.unwrap();
//! client.cas("user:42", "Ada L.", cur.cas.unwrap(), StoreOptions::ttl(300)).await?;
//!
//! // Many keys: one pipelined request per server, all servers at once.
//! for (key, r) in ["user:42", "user:43"].iter().zip(client.get_multi(&["user:42", "user:43"]).await) {
//!     println!("{key}: {:?}", r?.map(|v| v.data));
//! }
//! # Ok(()) }
//! ```
//!
//! The ring alone needs no server (this one runs as a test):
//!
//! ```
//! use multiput::{Ring, RingMode, ServerSpec};
//!
//! let servers: Vec<ServerSpec> = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11212"]
//!     .iter()
//!     .map(|s| s.parse().unwrap())
//!     .collect();
//! // The placement php-memcached (OPT_LIBKETAMA_COMPATIBLE) and pylibmc (ketama_weighted) use.
//! let ring = Ring::new(&servers, RingMode::LibketamaCompatible);
//! let owner = ring.server_for(b"user:42").unwrap();
//! let replicas = ring.preference_list(b"user:42", 2);
//! assert_eq!(replicas[0], owner);
//! assert_ne!(replicas[1], owner);
//! ```
//!
//! See `core/examples/` for programs to run against local servers, and `docs/` for the wire
//! details and measured performance.

#![warn(missing_docs)]

pub mod driver;
pub mod logic;

// The logic layer's modules at the crate root (multiput::ring, multiput::ops, ...).
pub use logic::{
    cluster, compress, config, envelope, error, health, key, machine, metrics, ops, options,
    pipeline, protocol, replication, ring, server, setup, values,
};
// The clients.
#[cfg(feature = "tokio")]
pub use driver::client;
#[cfg(feature = "prometheus")]
pub use driver::prometheus;
pub(crate) use driver::{api, replicated};
pub use driver::{blocking, fork, recipes};

#[cfg(feature = "tokio")]
pub use client::{Client, ClientBuilder};
/// The async replicated client: see [`replication`].
#[cfg(feature = "tokio")]
pub type ReplicatedClient = replicated::ReplicatedClient<Client>;
pub use config::{Config, ConfigBuilder, ProtocolChoice};
pub use error::{Error, ErrorKind, Result};
pub use ops::Value;
pub use options::StoreOptions;
pub use protocol::text::StoreMode;
pub use replication::{Policy, ReadPolicy, Versioned, WritePolicy, WriteReport};
pub use ring::{Distribution, Ring, RingMode};
pub use server::ServerSpec;
