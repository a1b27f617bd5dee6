//! The logic layer: everything multiput decides, and nothing that does I/O. The protocol
//! codec, the ring, key rules, server health, what each call sends and what its reply means,
//! replication's rules, the envelope, value conventions, and the multi-step behaviours as step
//! machines ([`machine`]). No module here reads a clock, opens a socket, sleeps or draws
//! randomness: time comes in as arguments and randomness as seeds
//! (`scripts/check-layers.sh`, run by CI, keeps it so). This is what the WASM build exports.

pub mod cluster;
pub mod compress;
pub mod config;
pub mod envelope;
pub mod error;
pub mod health;
pub mod key;
pub mod machine;
pub mod metrics;
pub mod ops;
pub mod options;
pub mod pipeline;
pub mod process;
pub mod protocol;
pub mod recipe;
pub mod replication;
pub mod ring;
pub mod server;
pub mod setup;
pub mod values;
