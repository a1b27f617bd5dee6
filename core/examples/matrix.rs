//! The Rust side of tests/interop/matrix.py (the cross-language value matrix): typed values
//! through the core's value rules, as a Rust app on a mixed fleet uses them.
//!
//! ```sh
//! cargo run -p multiput --example matrix -- write 127.0.0.1:11211 prefix:   # prints the names
//! cargo run -p multiput --example matrix -- read 127.0.0.1:11211 prefix: text int ...
//! ```
//!
//! `write` stores each value with `values::encode(Convention::default(), ...)` (multiput's own
//! flags); `read` prints, as JSON, what each key reads as through `values::decode_checked`:
//! `name -> [category, value]` or `["error", kind, message]`.

use multiput::blocking::Client;
use multiput::compress;
use multiput::envelope::{Format, Typed};
use multiput::values::{self, Convention, TypedRef};
use multiput::{Error, StoreOptions};
use serde_json::{json, Value as Json};

fn values() -> Vec<(&'static str, Typed)> {
    let structure = json!({"a": [1, 2], "b": "c"}).to_string().into_bytes();
    vec![
        ("text", Typed::Text("héllo wörld ✓".into())),
        ("empty_text", Typed::Text(String::new())),
        (
            "bytes",
            Typed::Bytes(vec![0x00, 0xff, b'r', b'a', b'w', b'\n']),
        ),
        ("int", Typed::Int(42)),
        ("negative", Typed::Int(-7)),
        ("big", Typed::Int(1 << 62)),
        ("float", Typed::Float(1.5)),
        ("small_float", Typed::Float(-0.25)),
        ("true", Typed::Bool(true)),
        ("false", Typed::Bool(false)),
        // Structured data shared across languages: JSON, which every binding reads.
        (
            "struct",
            Typed::Serialized {
                format: Format::JSON,
                data: structure,
            },
        ),
    ]
}

/// Python's `json.dumps(sort_keys=True)` spacing, so the orchestrator compares strings
/// (serde_json's maps are sorted).
fn py_json(v: &Json) -> String {
    match v {
        Json::Array(a) => format!("[{}]", a.iter().map(py_json).collect::<Vec<_>>().join(", ")),
        Json::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Json::String(k.clone()), py_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn category(t: TypedRef<'_>) -> Json {
    match t {
        TypedRef::Text(s) => json!(["text", s]),
        TypedRef::Bytes(b) | TypedRef::Raw(b, _) => {
            json!([
                "bytes",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ])
        }
        TypedRef::Int(i) => json!(["int", i.to_string()]),
        TypedRef::Float(f) => json!(["float", f]),
        TypedRef::Bool(b) => json!(["bool", b]),
        TypedRef::Serialized(f, data) if f == Format::JSON => {
            match serde_json::from_slice::<Json>(data) {
                Ok(v) => json!(["struct", py_json(&v)]),
                Err(e) => json!([
                    "error",
                    "undecodable",
                    format!("JSON that does not parse: {e}")
                ]),
            }
        }
        TypedRef::Serialized(f, _) => {
            let e = values::unreadable_serialized(f, "Rust");
            json!(["error", "undecodable", e.to_string()])
        }
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [action, servers, prefix, names @ ..] = &args[..] else {
        eprintln!("usage: matrix write|read SERVERS PREFIX [NAME...]");
        std::process::exit(2);
    };
    let client = Client::builder().servers(servers.split(',')).build()?;
    let conv = Convention::default();
    if action == "write" {
        let all = values();
        for (name, v) in &all {
            let (data, flags) =
                values::encode(conv, v).map_err(|e| Error::Config(format!("{name}: {e}")))?;
            let opts = StoreOptions { ttl: 0, flags };
            client.set(format!("{prefix}{name}"), &data, opts)?;
        }
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        println!("{}", names.join(" "));
        return Ok(());
    }
    let mut out = serde_json::Map::new();
    for name in names {
        let got = match client.get(format!("{prefix}{name}")) {
            Ok(None) => json!(["missing"]),
            Ok(Some(v)) => {
                // Compressed plain values (PHP's above its threshold) are inflated first.
                let inflated =
                    compress::inflate(conv, &v.data, v.flags, compress::MAX_DECOMPRESSED);
                let (data, flags) = match inflated {
                    None => (v.data.to_vec(), v.flags),
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        let e = values::undecodable(conv, &v.data, v.flags, &e.to_string());
                        out.insert(name.clone(), json!(["error", "undecodable", e.to_string()]));
                        continue;
                    }
                };
                match values::decode_checked(conv, &data, flags) {
                    Ok(t) => category(t),
                    Err(e) => json!(["error", "undecodable", e.to_string()]),
                }
            }
            Err(e) => json!([
                "error",
                format!("{:?}", e.kind()).to_lowercase(),
                e.to_string()
            ]),
        };
        out.insert(name.clone(), got);
    }
    println!("{}", Json::Object(out));
    Ok(())
}
