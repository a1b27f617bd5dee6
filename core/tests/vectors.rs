//! The ketama contract: every ketama test vector must map to the server libmemcached picks.
//!
//! Reads every `ketama_*.json` file in `docs/vectors/ring/` (in the repository, located from
//! `CARGO_MANIFEST_DIR`), or every `*.json` file in the directory named by
//! `MULTIPUT_VECTORS_DIR` when that is set. Missing or too few files are a failure, never a
//! skip: the vectors are the specification. Format, provenance and the regenerate command
//! (`scripts/gen-ketama-vectors.sh`, libmemcached itself) are in `docs/vectors/ring/README.md`.

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

/// The repository's vector directory `docs/vectors/ring/` (ketama and modula files).
fn repo_ring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/ring")
}

/// The ketama vector files in the repo: 7 files of 1,000 cases each (`ketama_01` .. `ketama_07`).
const MIN_KETAMA_FILES: usize = 7;
const MIN_KETAMA_CASES: usize = 7000;

/// `*.json` files in `dir` whose name starts with `prefix`, sorted.
fn json_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the test vectors directory {}: {e}. The vectors are the ring's \
             specification and must be present.",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("reading the vectors directory").path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

/// The ketama vector files, and the minimum number of cases expected of them: the repo's `docs/vectors/ring/ketama_*.json`, or every `*.json` in `MULTIPUT_VECTORS_DIR`.
fn vector_files() -> (Vec<PathBuf>, usize) {
    let (dir, prefix, min_files, min_cases) = match std::env::var_os("MULTIPUT_VECTORS_DIR") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), "", 1, 1),
        _ => (
            repo_ring_dir(),
            "ketama_",
            MIN_KETAMA_FILES,
            MIN_KETAMA_CASES,
        ),
    };
    let files = json_files(&dir, prefix);
    assert!(
        files.len() >= min_files,
        "{} {prefix}*.json vector files in {}, expected at least {min_files} \
         (regenerate them with scripts/gen-ketama-vectors.sh)",
        files.len(),
        dir.display()
    );
    (files, min_cases)
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
    let (files, min_cases) = vector_files();
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
    assert!(
        total >= min_cases,
        "only {total} ketama cases, expected at least {min_cases}"
    );
    println!("{} files, {total} cases ok", files.len());
}

/// Check the repo's vector files `docs/vectors/<subdir>/<prefix>*.json`; at least `min_files`
/// files and `min_cases` cases must be there.
fn check_repo_vectors(subdir: &str, prefix: &str, min_files: usize, min_cases: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/vectors")
        .join(subdir);
    let files = json_files(&dir, prefix);
    assert!(
        files.len() >= min_files,
        "{prefix}*.json vector files missing in {}",
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
/// [`RingMode::Modula`] (the `ketama_*` files next to them cover the consistent modes).
#[test]
fn repo_modula_vectors_map_to_the_libmemcached_server() {
    check_repo_vectors("ring", "modula_", 4, 3600);
}

/// The pymemcache vectors in the repo (`docs/vectors/pymemcache/`, made by
/// `scripts/gen-pymemcache-vectors.py` with pymemcache's own `HashClient`): the contract for
/// [`RingMode::Rendezvous`], including non-ASCII keys (hashed as pymemcache hashes a `str`).
#[test]
fn repo_pymemcache_vectors_map_to_the_server_pymemcache_picks() {
    check_repo_vectors("pymemcache", "rendezvous_", 5, 5000);
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
