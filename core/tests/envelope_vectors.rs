//! The envelope contract: every case in `docs/vectors/envelope.json` must hold.
//!
//! The committed JSON file is the specification's executable form (see `docs/envelope.md`); every
//! binding runs the same cases. A missing or empty file is a failure, never a skip. The file is
//! located from `CARGO_MANIFEST_DIR`, or named by `MULTIPUT_ENVELOPE_VECTORS` when that is set.

use std::collections::HashSet;
use std::path::PathBuf;

use bytes::BytesMut;
use multiput::envelope::{
    self, Decoded, Envelope, Format, Kind, Stamp, Typed, ValueType, HEADER_LEN,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    description: String,
    spec: String,
    version: u8,
    encode: Vec<EncodeCase>,
    decode: Vec<DecodeCase>,
    winner: Vec<WinnerCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StampJ {
    ts: String,
    writer: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodeCase {
    name: String,
    stamp: StampJ,
    kind: u8,
    #[serde(rename = "type")]
    vtype: u8,
    format: u8,
    payload_hex: String,
    #[serde(default)]
    value: Option<TypedJ>,
    encoded_hex: String,
}

/// The typed value of an encode case, for bindings that convert their language's values.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum TypedJ {
    Text(String),
    /// Decimal string: i64 does not fit a JSON number in every language.
    Int(String),
    Float(f64),
    Bool(bool),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsJ {
    stamp: StampJ,
    kind: u8,
    #[serde(rename = "type")]
    vtype: u8,
    format: u8,
    payload_hex: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expect {
    Plain(String),
    Fields(FieldsJ),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeCase {
    name: String,
    raw_hex: String,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WinnerCase {
    name: String,
    replicas_hex: Vec<Option<String>>,
    winner: Option<usize>,
}

fn vectors_path() -> PathBuf {
    match std::env::var_os("MULTIPUT_ENVELOPE_VECTORS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/envelope.json"),
    }
}

fn load() -> VectorFile {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the envelope test vectors {}: {e}. They are the envelope's specification \
             and must be present (set MULTIPUT_ENVELOPE_VECTORS to point elsewhere).",
            path.display()
        )
    });
    let file: VectorFile = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a valid vector file: {e}", path.display()));
    assert_eq!(file.version, envelope::VERSION, "vector file version");
    assert!(!file.description.is_empty() && file.spec.ends_with("envelope.md"));
    file
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(
        s.len() % 2 == 0
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lowercase hex expected, got {s:?}"
    );
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn stamp(s: &StampJ) -> Stamp {
    // Canonical decimal only: the strings must round-trip in every language.
    let ts: u64 = s.ts.parse().expect("ts is a decimal u64 string");
    let writer: u64 = s.writer.parse().expect("writer is a decimal u64 string");
    assert_eq!(
        (ts.to_string(), writer.to_string()),
        (s.ts.clone(), s.writer.clone())
    );
    Stamp::new(ts, writer)
}

fn fields(kind: u8, vtype: u8, format: u8) -> (Kind, ValueType, Format) {
    (
        Kind::from_u8(kind).expect("known kind"),
        ValueType::from_u8(vtype).expect("known type"),
        Format(format),
    )
}

fn unique_names<'a>(section: &str, names: impl Iterator<Item = &'a String>) -> usize {
    let mut seen = HashSet::new();
    for n in names {
        assert!(!n.is_empty(), "{section}: empty case name");
        assert!(
            seen.insert(n.clone()),
            "{section}: duplicate case name {n:?}"
        );
    }
    seen.len()
}

#[test]
fn encode_cases_encode_exactly() {
    let file = load();
    let n = unique_names("encode", file.encode.iter().map(|c| &c.name));
    assert!(n >= 20, "only {n} encode cases");
    let mut types_seen = HashSet::new();
    let mut tombstones = 0;
    for case in &file.encode {
        let name = &case.name;
        let st = stamp(&case.stamp);
        let (kind, vtype, format) = fields(case.kind, case.vtype, case.format);
        let payload = unhex(&case.payload_hex);
        let expected = unhex(&case.encoded_hex);
        types_seen.insert(case.vtype);
        tombstones += usize::from(kind == Kind::Tombstone);

        assert_eq!(
            envelope::encode(st, kind, vtype, format, &payload).unwrap(),
            expected,
            "{name}: encode"
        );
        let mut buf = BytesMut::from(&b"already here"[..]);
        envelope::encode_into(&mut buf, st, kind, vtype, format, &payload).unwrap();
        assert_eq!(&buf[12..], &expected[..], "{name}: encode_into");
        assert_eq!(expected.len(), HEADER_LEN + payload.len(), "{name}: length");

        let env = Envelope {
            stamp: st,
            kind,
            vtype,
            format,
            payload: &payload,
        };
        assert_eq!(
            envelope::decode(&expected),
            Decoded::Enveloped(env),
            "{name}: decode"
        );
        if kind == Kind::Tombstone {
            assert_eq!(
                &envelope::tombstone(st)[..],
                &expected[..],
                "{name}: tombstone()"
            );
            continue;
        }
        let typed = Typed::from_envelope(&env).unwrap();
        assert_eq!(typed.encode(st).unwrap(), expected, "{name}: Typed::encode");
        if let Some(value) = &case.value {
            let want = match value {
                TypedJ::Text(s) => Typed::Text(s.clone()),
                TypedJ::Int(s) => Typed::Int(s.parse().expect("decimal i64")),
                TypedJ::Float(f) => Typed::Float(*f),
                TypedJ::Bool(b) => Typed::Bool(*b),
            };
            assert_eq!(want.vtype(), vtype, "{name}: value's type");
            assert_eq!(want.encode_payload(), payload, "{name}: value's payload");
            if let (Typed::Float(a), Typed::Float(b)) = (&typed, &want) {
                assert_eq!(a.to_bits(), b.to_bits(), "{name}: float bits");
            }
            assert_eq!(typed, want, "{name}: typed value");
        }
    }
    assert_eq!(types_seen, (0..=5).collect(), "every value type is covered");
    assert!(tombstones > 0, "a tombstone is covered");
}

#[test]
fn decode_cases_decode_as_specified() {
    let file = load();
    let n = unique_names("decode", file.decode.iter().map(|c| &c.name));
    assert!(n >= 30, "only {n} decode cases");
    let (mut plain, mut enveloped) = (0, 0);
    for case in &file.decode {
        let name = &case.name;
        let raw = unhex(&case.raw_hex);
        let got = envelope::decode(&raw);
        match &case.expect {
            Expect::Plain(word) => {
                assert_eq!(
                    word, "plain",
                    "{name}: expect must be \"plain\" or an object"
                );
                assert_eq!(
                    got,
                    Decoded::Plain(&raw[..]),
                    "{name}: should read as plain"
                );
                assert!(
                    envelope::parse(&raw).is_err(),
                    "{name}: parse gives a reason"
                );
                assert_eq!(got.stamp(), Stamp::PLAIN);
                plain += 1;
            }
            Expect::Fields(f) => {
                let (kind, vtype, format) = fields(f.kind, f.vtype, f.format);
                let payload = unhex(&f.payload_hex);
                let want = Envelope {
                    stamp: stamp(&f.stamp),
                    kind,
                    vtype,
                    format,
                    payload: &payload,
                };
                assert_eq!(got, Decoded::Enveloped(want), "{name}: fields");
                if kind == Kind::Value {
                    Typed::from_envelope(&want)
                        .expect("a decoded value envelope has a typed value");
                }
                enveloped += 1;
            }
        }
    }
    assert!(
        plain >= 20 && enveloped >= 3,
        "{plain} plain, {enveloped} enveloped cases"
    );
}

#[test]
fn winner_cases_pick_the_given_replica() {
    let file = load();
    let n = unique_names("winner", file.winner.iter().map(|c| &c.name));
    assert!(n >= 10, "only {n} winner cases");
    for case in &file.winner {
        let name = &case.name;
        let raws: Vec<Option<Vec<u8>>> = case
            .replicas_hex
            .iter()
            .map(|r| r.as_deref().map(unhex))
            .collect();
        let replicas: Vec<Option<&[u8]>> = raws.iter().map(|r| r.as_deref()).collect();
        assert_eq!(
            envelope::winner(replicas.iter().copied()),
            case.winner,
            "{name}"
        );
        if let Some(w) = case.winner {
            for (i, r) in replicas.iter().enumerate() {
                let ord = envelope::compare(replicas[w], *r);
                assert!(
                    ord.is_gt() || (ord.is_eq() && w <= i),
                    "{name}: compare disagrees with winner at replica {i}"
                );
            }
        } else {
            assert!(
                replicas.iter().all(Option::is_none),
                "{name}: null only when all absent"
            );
        }
    }
}
