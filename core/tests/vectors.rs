//! The ketama contract: every shared test vector must map to the server libmemcached picks.
//!
//! Reads every `*.json` file in `shared/vectors` (next to the workspace, located from
//! `CARGO_MANIFEST_DIR`), or in the directory named by `MULTIPUT_VECTORS_DIR` when that is set.
//! A missing or empty directory is a failure, never a skip: the vectors are the specification.
//! The format is described in `shared/vectors/README.md`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use multiput::{Ring, RingMode, ServerSpec};
use proptest::prelude::*;
use serde::Deserialize;

/// One vector file.
#[derive(Deserialize)]
struct VectorFile {
    mode: String,
    servers: Vec<VectorServer>,
    cases: Vec<VectorCase>,
}

#[derive(Deserialize)]
struct VectorServer {
    host: String,
    port: u16,
    weight: u32,
}

#[derive(Deserialize)]
struct VectorCase {
    key: String,
    server: String,
}

fn vectors_dir() -> PathBuf {
    match std::env::var_os("MULTIPUT_VECTORS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}

fn vector_files() -> Vec<PathBuf> {
    let dir = vectors_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the ketama test vectors directory {}: {e}. The vectors are the ring's \
             specification and must be present (set MULTIPUT_VECTORS_DIR to point elsewhere).",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("reading the vectors directory").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.json vector files in {}",
        dir.display()
    );
    files
}

/// Whether the chosen server matches the vector's `host:port`. The vectors always write the
/// port; for a host containing ':' (IPv6) both `[host]:port` and `host:port` are accepted.
fn matches(spec: &ServerSpec, expected: &str) -> bool {
    spec.address() == expected
        || (spec.host.contains(':')
            && format!("{}:{}", spec.host, spec.effective_port()) == expected)
}

/// Checks one file; returns (cases checked, failure report or empty).
fn check_file(path: &Path) -> (usize, String) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: VectorFile = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name}: not a valid vector file: {e}"));
    let mode: RingMode = file.mode.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
    let servers: Vec<ServerSpec> = file
        .servers
        .iter()
        .map(|s| ServerSpec::new(s.host.clone(), s.port).with_weight(s.weight))
        .collect();
    let mut report = String::new();
    if file.cases.is_empty() {
        let _ = writeln!(report, "{name}: the file has no cases");
        return (0, report);
    }
    if servers.is_empty() {
        let _ = writeln!(report, "{name}: the file has no servers");
        return (0, report);
    }
    let ring = Ring::new(&servers, mode);
    let mut wrong = 0usize;
    for case in &file.cases {
        let got = ring
            .server_for(case.key.as_bytes())
            .map(|i| &ring.servers()[i]);
        let ok = got.is_some_and(|s| matches(s, &case.server));
        if !ok {
            wrong += 1;
            if wrong <= 20 {
                let _ = writeln!(
                    report,
                    "  {name}: key {:?} (hash {:#010x}) -> {}, expected {}",
                    case.key,
                    multiput::ring::hash_key(case.key.as_bytes()),
                    got.map_or_else(|| "none".to_string(), ServerSpec::address),
                    case.server
                );
            }
        }
    }
    if wrong > 0 {
        report.insert_str(
            0,
            &format!(
                "{name} ({mode}, points per server {:?}): {wrong} of {} cases wrong\n",
                ring.points_per_server(),
                file.cases.len()
            ),
        );
        if wrong > 20 {
            let _ = writeln!(report, "  ... and {} more", wrong - 20);
        }
    }
    (file.cases.len(), report)
}

#[test]
fn every_vector_maps_to_the_libmemcached_server() {
    let files = vector_files();
    let mut failures = String::new();
    let mut total = 0;
    for path in &files {
        let (checked, report) = check_file(path);
        let name = path.file_name().unwrap().to_string_lossy();
        if report.is_empty() {
            println!("{name}: {checked} cases ok");
        } else {
            failures.push_str(&report);
        }
        total += checked;
    }
    assert!(
        failures.is_empty(),
        "ketama vectors failed ({} files, {total} cases):\n{failures}",
        files.len()
    );
    println!("{} files, {total} cases ok", files.len());
}

/// Check every vector file in a directory of the repo's own vectors (same format as the
/// shared ones); at least `min_files` files and `min_cases` cases must be there.
fn check_repo_vectors(subdir: &str, min_files: usize, min_cases: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/vectors")
        .join(subdir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= min_files,
        "vector files missing in {}",
        dir.display()
    );
    let mut failures = String::new();
    let mut total = 0;
    for path in &files {
        let (checked, report) = check_file(path);
        failures.push_str(&report);
        total += checked;
    }
    assert!(failures.is_empty(), "{subdir} vectors failed:\n{failures}");
    assert!(
        total >= min_cases,
        "only {total} cases in {}",
        dir.display()
    );
}

/// The modula vectors in the repo (`docs/vectors/ring/`), made with php-memcached's
/// `getServerByKey()` under libmemcached's default distribution and hash: the contract for
/// [`RingMode::Modula`] (the shared vectors cover the consistent modes).
#[test]
fn repo_modula_vectors_map_to_the_libmemcached_server() {
    check_repo_vectors("ring", 4, 3600);
}

/// The pymemcache vectors in the repo (`docs/vectors/pymemcache/`, made by
/// `scripts/gen-pymemcache-vectors.py` with pymemcache's own `HashClient`): the contract for
/// [`RingMode::Rendezvous`], including non-ASCII keys (hashed as pymemcache hashes a `str`).
#[test]
fn repo_pymemcache_vectors_map_to_the_server_pymemcache_picks() {
    check_repo_vectors("pymemcache", 5, 5000);
}

#[test]
fn rendezvous_preference_lists_start_with_the_owner_and_survive_a_removal() {
    let servers = fleet(7, &[]);
    let ring = Ring::new(&servers, RingMode::Rendezvous);
    for i in 0..500 {
        let key = format!("pref:{i}");
        let list = ring.preference_list(key.as_bytes(), 7);
        assert_eq!(list.len(), 7);
        assert_eq!(Some(list[0]), ring.server_for(key.as_bytes()), "{key}");
        // Highest random weight: without the owner, the key goes to the second choice.
        let rest: Vec<ServerSpec> = (0..7)
            .filter(|&j| j != list[0])
            .map(|j| servers[j].clone())
            .collect();
        let smaller = Ring::new(&rest, RingMode::Rendezvous);
        let owner = &rest[smaller.server_for(key.as_bytes()).unwrap()];
        assert_eq!(owner.address(), servers[list[1]].address(), "{key}");
    }
}

fn fleet(n: usize, weights: &[u32]) -> Vec<ServerSpec> {
    (0..n)
        .map(|i| {
            ServerSpec::new(format!("cache-{i}.example.net"), 11211 + (i % 3) as u16)
                .with_weight(weights.get(i).copied().unwrap_or(1))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// preference_list(key, n) lists min(n, len) distinct servers, starting with server_for.
    #[test]
    fn preference_list_is_distinct_and_starts_with_the_owner(
        servers in 1usize..24,
        weights in proptest::collection::vec(0u32..6, 0..24),
        md5_mode in any::<bool>(),
        key in proptest::collection::vec(any::<u8>(), 1..64),
        n in 0usize..30,
    ) {
        let mode = if md5_mode { RingMode::KetamaMd5 } else { RingMode::LibketamaCompatible };
        let ring = Ring::new(&fleet(servers, &weights), mode);
        let list = ring.preference_list(&key, n);
        prop_assert_eq!(list.len(), n.min(servers));
        let distinct: HashSet<usize> = list.iter().copied().collect();
        prop_assert_eq!(distinct.len(), list.len());
        prop_assert!(list.iter().all(|&i| i < servers));
        if n > 0 {
            prop_assert_eq!(Some(list[0]), ring.server_for(&key));
        }
    }
}
