//! `get`, `set`, `delete`, `incr`/`decr` and `touch` with `--replicas N` (N > 1), on the
//! blocking replicated client: N enveloped copies per key, the latest copy wins on reads,
//! deletes write tombstones, conditional writes and counters are serialized by CAS on the
//! key's primary replica (core's `ReplicatedClient::conditional` and `incr_exact`).

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use multiput::blocking::ReplicatedClient;
use multiput::envelope::{Format, ValueType};
use multiput::recipes::CasOptions;
use multiput::{Versioned, WriteReport};

use crate::args::{ArithArgs, GetArgs, SetArgs};
use crate::commands::{check_keys, keyed, os_bytes, print_counter, print_deleted, read_value};
use crate::output::{escape_bytes, key_for_message, utc_millis};
use crate::Failure;

pub fn get(rc: &ReplicatedClient, a: GetArgs) -> Result<ExitCode, Failure> {
    let keys: Vec<&[u8]> = a.keys.iter().map(os_bytes).collect();
    check_keys(rc.inner(), &keys)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();

    if let [key] = keys[..] {
        let found = rc.get(key).map_err(|e| keyed(key, e))?;
        if a.verbose {
            eprintln!("{}", details(rc, key, found.as_ref())?);
        }
        let Some(v) = found else {
            return Err(Failure::error(format!("miss: {}", key_for_message(key))));
        };
        if a.flags {
            eprintln!("flags={}", v.flags);
        }
        out.write_all(&v.data)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }

    let results = rc.get_multi(&keys);
    let mut failed = false;
    let mut text = Vec::new();
    for (key, r) in keys.iter().zip(results) {
        text.extend_from_slice(key);
        text.push(b'\t');
        match r {
            Ok(found) => {
                if a.verbose {
                    eprintln!(
                        "{}\t{}",
                        escape_bytes(key),
                        details(rc, key, found.as_ref())?
                    );
                }
                match found {
                    Some(v) => {
                        text.extend_from_slice(escape_bytes(&v.data).as_bytes());
                        if a.flags {
                            text.extend_from_slice(format!("\tflags={}", v.flags).as_bytes());
                        }
                    }
                    None => text.extend_from_slice(b"(miss)"),
                }
            }
            Err(e) => {
                failed = true;
                text.extend_from_slice(b"(error)");
                eprintln!("multiput: {}: {e}", key_for_message(key));
            }
        }
        text.push(b'\n');
    }
    out.write_all(&text)?;
    out.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `--verbose` says about a key's copy: its stamp, whether it was enveloped, its type,
/// and the replicas that hold the key (primary first), a replica that failed during this
/// command marked `(failed)`.
fn details(rc: &ReplicatedClient, key: &[u8], v: Option<&Versioned>) -> Result<String, Failure> {
    let cluster = rc.inner().cluster();
    let failed = |name: &str| {
        (0..cluster.len())
            .any(|i| cluster.name(i) == name && cluster.health(i).consecutive_failures() > 0)
    };
    let replicas = rc
        .replicas_of(key)
        .map_err(|e| keyed(key, e))?
        .into_iter()
        .map(|name| {
            if failed(name) {
                format!("{name}(failed)")
            } else {
                name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok(match v {
        None => format!("miss replicas={replicas}"),
        Some(v) if v.enveloped => format!(
            "ts={} time={} counter={} writer={:016x} enveloped=yes type={}{} replicas={replicas}",
            v.stamp.ts,
            utc_millis(v.stamp.millis()),
            v.stamp.counter(),
            v.stamp.writer,
            type_name(v.value_type),
            if v.value_type == ValueType::Serialized {
                format!(" format={}", v.format.0)
            } else {
                String::new()
            },
        ),
        Some(v) => format!(
            "ts=0 writer=0 enveloped=no flags={} replicas={replicas}",
            v.flags
        ),
    })
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Bytes => "bytes",
        ValueType::Text => "text",
        ValueType::Int => "int",
        ValueType::Float => "float",
        ValueType::Bool => "bool",
        ValueType::Serialized => "serialized",
    }
}

pub fn set(rc: &ReplicatedClient, a: SetArgs) -> Result<ExitCode, Failure> {
    let key = os_bytes(&a.key);
    check_keys(rc.inner(), &[key])?;
    let value = read_value(&a)?;
    let report = if a.add {
        rc.add_typed(key, ValueType::Bytes, Format::NONE, &value, a.ttl)
    } else if a.replace {
        rc.replace_typed(key, ValueType::Bytes, Format::NONE, &value, a.ttl)
    } else {
        rc.set(key, &value, a.ttl)
    }
    .map_err(|e| keyed(key, e))?;
    warn_failed(key, &report);
    Ok(ExitCode::SUCCESS)
}

/// Exact replicated incr/decr: a CAS loop on the primary, the result written to every replica.
pub fn arith(rc: &ReplicatedClient, a: ArithArgs, incr: bool) -> Result<ExitCode, Failure> {
    let key = os_bytes(&a.key);
    check_keys(rc.inner(), &[key])?;
    let Ok(delta) = i64::try_from(a.delta) else {
        return Err(Failure::usage(format!(
            "delta {} is too large for a replicated counter (at most {})",
            a.delta,
            i64::MAX
        )));
    };
    let delta = if incr { delta } else { -delta };
    let value = rc
        .incr_exact(key, delta, CasOptions::default())
        .map_err(|e| keyed(key, e))?;
    print_counter(key, value, "multiput --replicas N set KEY 0")
}

/// Replicated touch: the latest copy rewritten to every replica with the new TTL.
pub fn touch(rc: &ReplicatedClient, key: &OsString, ttl: u32) -> Result<ExitCode, Failure> {
    let key = os_bytes(key);
    check_keys(rc.inner(), &[key])?;
    if rc.touch(key, ttl).map_err(|e| keyed(key, e))? {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::error(format!(
            "{}: not found",
            key_for_message(key)
        )))
    }
}

pub fn delete(rc: &ReplicatedClient, keys: &[OsString]) -> Result<ExitCode, Failure> {
    let keys: Vec<&[u8]> = keys.iter().map(os_bytes).collect();
    check_keys(rc.inner(), &keys)?;
    let results = if let [key] = keys[..] {
        vec![rc.delete(key)]
    } else {
        rc.delete_multi(&keys)
    };
    // A tombstone is written whether or not the key existed: every success is "deleted".
    let results = keys.iter().zip(results).map(|(key, r)| {
        r.map(|report| {
            warn_failed(key, &report);
            true
        })
    });
    print_deleted(&keys, results)
}

/// A write that met its policy without every replica: name the ones that missed it.
fn warn_failed(key: &[u8], report: &WriteReport) {
    for (server, e) in &report.failed {
        eprintln!(
            "multiput: warning: {}: replica {server} did not store it: {e}",
            key_for_message(key)
        );
    }
}
