//! Compile ffi/tests/ring_test.c against the committed header, link the cdylib, and run it on
//! cases from the shared ketama vectors: the C view of the ring must match libmemcached's.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    // The test binary lives in target/<profile>/deps; the cdylib in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

#[test]
fn c_program_places_keys_like_libmemcached() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = target_dir();
    // `cargo test` builds the library as an rlib only; build the cdylib the C program links.
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
    let exe = lib_dir.join("multiput_ring_test");
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(manifest.join("tests/ring_test.c"))
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
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Vector 05 (weighted, custom ports): servers and the first cases, read from the file.
    let vectors = manifest.join("../../shared/vectors/05_five_servers_weighted.json");
    let text = std::fs::read_to_string(&vectors)
        .unwrap_or_else(|e| panic!("read {}: {e}", vectors.display()));
    let servers = extract_servers(&text);
    let mut args = vec![servers];
    for (k, s) in extract_cases(&text).into_iter().take(200) {
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

/// `host:port:weight,...` from the file's "servers" array (a tiny scan; the file format is
/// fixed by ../shared/vectors/README.md).
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
