//! multiput's logic layer as WebAssembly, for the Node package `multiput` (`wasm/js/`).
//!
//! WebAssembly has no sockets, which is why the core's logic layer does no I/O: this crate
//! exports that layer through wasm-bindgen and the JavaScript package carries the bytes. It is
//! not a client by itself and never touches the network or the clock.
//!
//! - [`Codec`]: one connection — the core's connection pipeline (`multiput::pipeline`: the
//!   probe, the reply readers in request order, deadlines, bytes nobody asked for) with
//!   requests encoded by the core's calls and their replies interpreted by the same calls.
//! - [`Ring`]: libmemcached's ketama placement (`libketama_compatible`, `ketama_md5`),
//!   `serverFor` and `preferenceList`.
//! - Envelope functions and [`Hlc`]: encode, decode, compare, winner; the hybrid logical clock
//!   with wall time passed in (`Date.now()`).
//! - [`Core`]: the client-wide state — key rules, routing, per-server health (time passed in),
//!   replication policy, envelopes stamped with the writer id JavaScript supplies from
//!   `crypto.getRandomValues` (wasm32 has no random source), lock owner tokens — and every
//!   call of the client as a [`Job`]: the core picks the call's machine, plain or replicated
//!   (`calls.rs`), and JavaScript drives it (`job.rs`).
//!
//! Every error handed to JavaScript is an `Error` with a stable `kind` (the core's
//! `ErrorKind` name) and the variant's fields; the JS package maps kinds to `MultiputError`
//! subclasses.

mod calls;
mod codec;
mod core;
mod envelope;
mod job;
mod js;
mod packed;
mod ring;
mod values;

pub use crate::codec::Codec;
pub use crate::core::{defaults, Core};
pub use crate::envelope::{
    envelope_compare, envelope_decode, envelope_encode, envelope_of_value, envelope_tombstone,
    envelope_why_plain, envelope_winner, stamp_parts, typed_from_value, value_from_typed, Hlc,
};
pub use crate::job::Job;
pub use crate::js::{io_error, recipe_error, tls_error};
pub use crate::ring::Ring;

use wasm_bindgen::prelude::*;

/// The version of this crate (and of the core it was built from).
#[wasm_bindgen(js_name = coreVersion)]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
