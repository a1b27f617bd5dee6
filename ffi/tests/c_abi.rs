//! Compile the C test programs against the committed header, link the cdylib, and run them:
//! - ffi/tests/ring_test.c on cases from the ketama vectors in docs/vectors/ring/: the C view
//!   of the ring must match libmemcached's;
//! - ffi/tests/client_test.c against real memcached servers (started here by PID): every
//!   client call, typed values, multi-key calls, CAS updates from several threads, locks,
//!   replication and the error paths. Afterwards this test reads what the C program left on
//!   the servers with raw protocol commands.

use multiput_tests::{cluster, raw_get, Memcached};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn target_dir() -> PathBuf {
    // The test binary lives in target/<profile>/deps; the cdylib in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Build the cdylib once per test run (`cargo test` builds the library as an rlib only).
fn build_library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let lib_dir = target_dir();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "multiput-ffi", "--lib"]);
            if lib_dir.ends_with("release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p multiput-ffi failed");
            let so = lib_dir.join("libmultiput_ffi.so");
            assert!(so.exists(), "{} missing after cargo build", so.display());
            lib_dir
        })
        .clone()
}

/// Compile `tests/<name>.c` against the committed header and the cdylib.
fn compile(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = build_library();
    let exe = lib_dir.join(format!("multiput_{name}"));
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(manifest.join(format!("tests/{name}.c")))
        .arg("-I")
        .arg(manifest.join("include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lmultiput_ffi")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output()
        .expect("run cc (install gcc)");
    assert!(
        out.status.success(),
        "cc {name}.c failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn c_program_places_keys_like_libmemcached() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = compile("ring_test");

    // Vector 05 (weighted, custom ports): servers and the first cases, read from the file
    // (docs/vectors/ring/, made by libmemcached: scripts/gen-ketama-vectors.sh).
    let vectors = manifest.join("../docs/vectors/ring/ketama_05_five_servers_weighted.json");
    let text = std::fs::read_to_string(&vectors)
        .unwrap_or_else(|e| panic!("read {}: {e}", vectors.display()));
    let servers = extract_servers(&text);
    assert_eq!(
        servers.split(',').count(),
        5,
        "servers in {}",
        vectors.display()
    );
    let cases = extract_cases(&text);
    assert!(
        cases.len() >= 200,
        "{} cases in {}",
        cases.len(),
        vectors.display()
    );
    let mut args = vec![servers];
    for (k, s) in cases.into_iter().take(200) {
        args.push(k);
        args.push(s);
    }
    let run = Command::new(&exe).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "C checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.starts_with("ok: 0 failures"), "{stdout}");
}

#[test]
fn c_program_drives_the_client_against_real_memcached() {
    let exe = compile("client_test");
    let plain = Memcached::start();
    let servers = cluster(3);
    let list: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let run = Command::new(&exe)
        .arg(plain.addr())
        .arg(list.join(","))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "C checks failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.starts_with("ok: "), "{stdout}");
    println!("{stdout}");

    // Plain values carry multiput's own flags (the default convention): an int is "42" with
    // flags 0xA000, a 5000-byte string is text (0x9000) compressed to a zlib stream (0x800).
    assert_eq!(
        raw_get(&plain.addr(), "left:int"),
        Some((0xa000, b"42".to_vec()))
    );
    let (flags, data) = raw_get(&plain.addr(), "left:big").expect("left:big stored");
    assert_eq!(flags, 0x9800, "text, zlib-compressed");
    assert_eq!(data[0], 0x78, "a zlib stream");
    assert!(data.len() < 200, "{} bytes", data.len());

    // The replicated value is on exactly the two servers the C program named, enveloped
    // (magic E1 4D 50, type text) with flags 0.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("left:repl on "))
        .expect("replica line");
    let holders: Vec<&str> = line["left:repl on ".len()..].split(" and ").collect();
    for addr in &list {
        let got = raw_get(addr, "left:repl");
        if holders.contains(&addr.as_str()) {
            let (flags, data) = got.unwrap_or_else(|| panic!("no copy on {addr}"));
            assert_eq!(flags, 0);
            assert_eq!(&data[..4], &[0xE1, 0x4D, 0x50, 1]);
            assert_eq!(data[5], 1, "type text");
            assert_eq!(&data[24..], b"copy");
        } else {
            assert_eq!(got, None, "a copy on {addr}, which is not a replica");
        }
    }
}

/// `host:port:weight,...` from the file's "servers" array (a tiny scan; the file format is
/// fixed by docs/vectors/ring/README.md: one server a line).
fn extract_servers(json: &str) -> String {
    let mut out = Vec::new();
    for line in json.lines().filter(|l| l.contains("\"host\"")) {
        let field = |name: &str| {
            let i = line.find(&format!("\"{name}\": ")).unwrap() + name.len() + 4;
            let rest = &line[i..];
            let end = rest.find([',', '}']).unwrap();
            rest[..end].trim().trim_matches('"').to_string()
        };
        out.push(format!(
            "{}:{}:{}",
            field("host"),
            field("port"),
            field("weight")
        ));
    }
    out.join(",")
}

fn extract_cases(json: &str) -> Vec<(String, String)> {
    json.lines()
        .filter(|l| l.contains("\"key\"") && l.is_ascii() && !l.contains("\\"))
        .map(|l| {
            let parts: Vec<&str> = l.split('"').collect();
            (parts[3].to_string(), parts[7].to_string())
        })
        .collect()
}

/// DESIGN lesson 8: `fork()` after the client made calls; 4 children each read 3,000 keys
/// with known values (0 wrong, 0 errors), then the parent's calls still succeed. Plain and
/// with 2 replicas.
#[test]
fn c_program_forks_after_calls_and_every_process_reads_its_own_replies() {
    let exe = compile("fork_test");
    let servers = cluster(3);
    let list: Vec<String> = servers.iter().map(Memcached::addr).collect();
    for replicas in ["0", "2"] {
        let run = Command::new(&exe)
            .arg(list.join(","))
            .arg(replicas)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.success(),
            "replicas={replicas}:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.starts_with("ok: children 4, reads 12000, wrong 0, errors 0"),
            "{stdout}"
        );
    }
}

/// The library is never unloaded once loaded (`-z nodelete`, ffi/build.rs): PHP's FFI
/// closes a request's library at the end of the request, and the persistent clients live in
/// it. Checked on the file itself, loaded and closed with dlopen/dlclose.
#[test]
fn the_library_stays_loaded_after_dlclose() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = build_library();
    let exe = lib_dir.join("multiput_nodelete_test");
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(manifest.join("tests/nodelete_test.c"))
        .arg("-ldl")
        .output()
        .expect("run cc (install gcc)");
    assert!(
        out.status.success(),
        "cc nodelete_test.c failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .arg(lib_dir.join("libmultiput_ffi.so"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
