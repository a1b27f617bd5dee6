//! End-to-end tests of the `multiput` binary: the ring against the repo's vectors, the
//! server commands against real memcached processes, and bad input.

use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use multiput_tests::{cluster, raw_get, raw_set, Memcached};

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.text(),
            self.stderr
        )
    }
}

/// Run `multiput ARGS` with `env` set (MULTIPUT_SERVERS removed unless given) and `stdin`.
fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_multiput"));
    cmd.args(args)
        .env_remove("MULTIPUT_SERVERS")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("cannot run the multiput binary");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        // A thread, so a large output cannot block the child while we are still writing.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output().expect("waiting for multiput");
    if let Some(w) = writer {
        w.join().expect("stdin writer");
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "multiput {args:?} panicked:\n{stderr}"
    );
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr,
    }
}

fn run(args: &[&str]) -> Out {
    run_with(args, &[], None)
}

fn run_in(args: &[&str], stdin: &[u8]) -> Out {
    run_with(args, &[], Some(stdin))
}

/// `multiput --servers S ARGS`.
fn mp(servers: &str, args: &[&str]) -> Out {
    let mut all = vec!["--servers", servers];
    all.extend_from_slice(args);
    run(&all)
}

fn mp_in(servers: &str, args: &[&str], stdin: &[u8]) -> Out {
    let mut all = vec!["--servers", servers];
    all.extend_from_slice(args);
    run_in(&all, stdin)
}

#[track_caller]
fn ok(out: Out) -> Out {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    out
}

#[track_caller]
fn fails(out: Out, code: i32, needle: &str) -> Out {
    assert_eq!(out.code, code, "expected exit {code}: {out:?}");
    assert!(
        out.stderr.contains(needle),
        "stderr should mention {needle:?}: {out:?}"
    );
    out
}

fn servers_arg(servers: &[Memcached]) -> String {
    servers
        .iter()
        .map(Memcached::addr)
        .collect::<Vec<_>>()
        .join(",")
}

/// The server `multiput ring` names for `key`.
fn owner(servers: &str, key: &str) -> String {
    let out = ok(mp(servers, &["ring", key]));
    let line = out.text();
    let (k, server) = line
        .trim_end()
        .split_once('\t')
        .unwrap_or_else(|| panic!("bad ring line {line:?}"));
    assert_eq!(k, key);
    server.to_string()
}

// ---------------------------------------------------------------------------------------------
// A small JSON reader for the vector files (no serde dependency needed)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, name: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {name:?}")),
            _ => panic!("not an object when looking for {name:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn u64(&self) -> u64 {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => *n as u64,
            other => panic!("expected an unsigned integer, got {other:?}"),
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected {:?}", b as char))
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    fields.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text =
                    std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                text.parse()
                    .map(Json::Num)
                    .map_err(|e| format!("bad number {text:?}: {e}"))
            }
            _ => self.err("expected a value"),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| "short \\u escape".to_string())?;
        let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|e| format!("bad \\u escape {text:?}: {e}"))
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("expected a string");
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if !self.s[self.i..].starts_with(b"\\u") {
                                    return self.err("lone high surrogate");
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return self.err("bad low surrogate");
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or_else(|| "bad code point".to_string())?
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }
}

#[test]
fn json_reader_handles_escapes() {
    let v = Parser::parse(r#"{"a": ["x\"\\\/\n\u00e9\ud83d\ude00", 12, true, null], "b": {}}"#)
        .expect("valid json");
    assert_eq!(v.get("a").arr()[0].str(), "x\"\\/\n\u{e9}\u{1f600}");
    assert_eq!(v.get("a").arr()[1].u64(), 12);
    assert!(Parser::parse("[1,").is_err());
}

// ---------------------------------------------------------------------------------------------
// (a) ring against the vectors in docs/vectors/
// ---------------------------------------------------------------------------------------------

/// The repo's ring vectors: `ketama_*.json` (made by libmemcached itself, see
/// `scripts/gen-ketama-vectors.sh`) and `modula_*.json` (made by php-memcached).
const RING_VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/ring");

struct VectorFile {
    name: String,
    mode: String,
    /// `--servers` value: host:port:weight, IPv6 hosts in brackets.
    servers: String,
    server_count: usize,
    cases: Vec<(String, String)>,
}

/// The ketama vectors: `docs/vectors/ring/ketama_*.json` (all 7 must be there), or every
/// `*.json` in the directory named by `MULTIPUT_VECTORS_DIR` when that is set.
fn load_vectors() -> Vec<VectorFile> {
    match std::env::var_os("MULTIPUT_VECTORS_DIR") {
        Some(dir) if !dir.is_empty() => load_vectors_in(Path::new(&dir), "", 1),
        _ => load_vectors_in(Path::new(RING_VECTORS), "ketama_", 7),
    }
}

/// The repo's own vectors for the modula distribution (made with php-memcached).
fn repo_modula_vectors() -> Vec<VectorFile> {
    load_vectors_in(Path::new(RING_VECTORS), "modula_", 4)
}

/// The `*.json` files in `dir` whose name starts with `prefix`; fewer than `min_files` of them
/// is a failure (the vectors are the ring's specification, never skipped).
fn load_vectors_in(dir: &Path, prefix: &str, min_files: usize) -> Vec<VectorFile> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the test vectors directory {}: {e}. The vectors are the ring's \
             specification and must be present (or set MULTIPUT_VECTORS_DIR).",
            dir.display()
        )
    });
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("reading the vectors directory").path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    paths.sort();
    assert!(
        paths.len() >= min_files,
        "{} {prefix}*.json vector files in {}, expected at least {min_files}",
        paths.len(),
        dir.display()
    );
    paths.iter().map(|p| load_vector(p)).collect()
}

fn load_vector(path: &Path) -> VectorFile {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json = Parser::parse(&text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
    let servers: Vec<String> = json
        .get("servers")
        .arr()
        .iter()
        .map(|s| {
            let host = s.get("host").str();
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            format!("{host}:{}:{}", s.get("port").u64(), s.get("weight").u64())
        })
        .collect();
    let cases: Vec<(String, String)> = json
        .get("cases")
        .arr()
        .iter()
        .map(|c| {
            (
                c.get("key").str().to_string(),
                c.get("server").str().to_string(),
            )
        })
        .collect();
    assert!(!cases.is_empty(), "{name}: no cases");
    VectorFile {
        name,
        mode: json.get("mode").str().to_string(),
        server_count: servers.len(),
        servers: servers.join(","),
        cases,
    }
}

/// The vectors write `host:port`; the CLI writes IPv6 hosts as `[host]:port`. Accept both.
fn same_server(printed: &str, expected: &str) -> bool {
    if printed == expected {
        return true;
    }
    match printed.strip_prefix('[').and_then(|r| r.split_once("]:")) {
        Some((host, port)) => format!("{host}:{port}") == expected,
        None => false,
    }
}

#[test]
fn ring_matches_every_vector_from_stdin() {
    // Each loader fails on too few files: 7 ketama (unless MULTIPUT_VECTORS_DIR), 4 modula,
    // 5 pymemcache.
    let mut files = load_vectors();
    files.extend(repo_modula_vectors());
    files.extend(load_vectors_in(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/vectors/pymemcache"
        )),
        "rendezvous_",
        5,
    ));
    let mut report = String::new();
    let mut total = 0;
    for f in &files {
        let mut input = Vec::new();
        for (key, _) in &f.cases {
            assert!(
                !key.contains('\n'),
                "{}: key {key:?} cannot go on a line",
                f.name
            );
            input.extend_from_slice(key.as_bytes());
            input.push(b'\n');
        }
        let out = run_in(
            &["ring", "--mode", &f.mode, "--servers", &f.servers],
            &input,
        );
        assert_eq!(out.code, 0, "{}: {out:?}", f.name);
        let text = String::from_utf8(out.stdout.clone())
            .unwrap_or_else(|e| panic!("{}: output is not UTF-8: {e}", f.name));
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(
            lines.len(),
            f.cases.len(),
            "{}: one output line per key expected",
            f.name
        );
        let mut wrong = 0;
        for ((key, expected), line) in f.cases.iter().zip(&lines) {
            total += 1;
            let good = line
                .split_once('\t')
                .is_some_and(|(k, s)| k == key && same_server(s, expected));
            if !good {
                wrong += 1;
                if wrong <= 5 {
                    report.push_str(&format!(
                        "{}: key {key:?}: expected {expected}, got line {line:?}\n",
                        f.name
                    ));
                }
            }
        }
        if wrong > 0 {
            report.push_str(&format!(
                "{}: {wrong} of {} cases wrong\n",
                f.name,
                f.cases.len()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "ring disagrees with the vectors:\n{report}"
    );
    assert!(total >= 1000 * files.len().min(7), "too few cases: {total}");
}

#[test]
fn ring_matches_vectors_with_keys_as_arguments() {
    for f in load_vectors() {
        let picked: Vec<&(String, String)> = f.cases.iter().step_by(97).take(12).collect();
        // `--` ends the options: some keys start with '-'.
        let mut args = vec!["--mode", &f.mode, "--servers", &f.servers, "ring", "--"];
        args.extend(picked.iter().map(|(k, _)| k.as_str()));
        let out = ok(run(&args));
        let lines = out.lines();
        assert_eq!(lines.len(), picked.len(), "{}: {out:?}", f.name);
        for ((key, expected), line) in picked.iter().zip(&lines) {
            let (k, s) = line.split_once('\t').expect("KEY<TAB>SERVER");
            assert_eq!(k, key, "{}", f.name);
            assert!(
                same_server(s, expected),
                "{}: {key:?}: expected {expected}, got {s}",
                f.name
            );
        }
    }
}

#[test]
fn ring_replicas_list_distinct_servers_owner_first() {
    for f in load_vectors() {
        let n = f.server_count.to_string();
        let cases: Vec<&(String, String)> = f.cases.iter().take(200).collect();
        let input: String = cases.iter().map(|(k, _)| format!("{k}\n")).collect();
        let out = ok(run_in(
            &[
                "ring",
                "--mode",
                &f.mode,
                "--servers",
                &f.servers,
                "--replicas",
                &n,
            ],
            input.as_bytes(),
        ));
        let lines = out.lines();
        assert_eq!(lines.len(), cases.len(), "{}", f.name);
        for ((key, expected), line) in cases.iter().zip(&lines) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols[0], key, "{}", f.name);
            let list = &cols[1..];
            assert!(
                same_server(list[0], expected),
                "{}: {key:?}: owner {expected}, list {list:?}",
                f.name
            );
            let distinct: std::collections::HashSet<&&str> = list.iter().collect();
            assert_eq!(distinct.len(), list.len(), "{}: {line:?}", f.name);
            assert!(list.len() <= f.server_count && !list.is_empty());
        }
    }
}

#[test]
fn ring_output_and_input_details() {
    // Host names are hashed as written, never resolved; the port is always printed; IPv6 in
    // brackets; weight 0 accepted.
    let out = ok(mp(
        "cache-a.invalid:11211:0,cache-b.invalid,[2001:db8::1]:11212:3",
        &["ring", "k1", "k2", "k3", "k4", "k5"],
    ));
    let lines = out.lines();
    assert_eq!(lines.len(), 5);
    for (i, line) in lines.iter().enumerate() {
        let (k, s) = line.split_once('\t').expect("KEY<TAB>SERVER");
        assert_eq!(k, format!("k{}", i + 1));
        assert!(
            [
                "cache-a.invalid:11211",
                "cache-b.invalid:11211",
                "[2001:db8::1]:11212"
            ]
            .contains(&s),
            "{line}"
        );
    }

    // stdin: CRLF stripped, an empty line is an invalid key that is reported while the other
    // keys are still printed, in order; the exit status says something was wrong.
    let servers = "192.0.2.11,192.0.2.12,192.0.2.13";
    let expected_first = owner(servers, "user:42");
    let out = mp_in(servers, &["ring"], b"user:42\r\n\nbad key\ncart:7");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("line 2"), "{out:?}");
    assert!(out.stderr.contains("line 3"), "{out:?}");
    assert!(out.stderr.contains("invalid key"), "{out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0], format!("user:42\t{expected_first}"));
    assert!(lines[1].starts_with("cart:7\t"));

    // Same through MULTIPUT_SERVERS.
    let out = ok(run_with(
        &["ring", "user:42"],
        &[("MULTIPUT_SERVERS", servers)],
        None,
    ));
    assert_eq!(out.text(), format!("user:42\t{expected_first}\n"));

    // --replicas above the server count lists every server once.
    let out = ok(mp(servers, &["ring", "--replicas", "5", "x"]));
    assert_eq!(out.text().trim_end().split('\t').count(), 4, "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// (b) server commands against real memcached
// ---------------------------------------------------------------------------------------------

#[test]
fn set_get_delete_touch_end_to_end() {
    let servers = cluster(3);
    let s = servers_arg(&servers);

    // set, and the value lands on the server the ring names (and only there).
    ok(mp(&s, &["set", "greeting", "hello world"]));
    let home = owner(&s, "greeting");
    for m in &servers {
        let held = raw_get(&m.addr(), "greeting");
        if m.addr() == home {
            assert_eq!(held, Some((0, b"hello world".to_vec())));
        } else {
            assert_eq!(held, None, "greeting must only be on {home}");
        }
    }
    let out = ok(mp(&s, &["get", "greeting"]));
    assert_eq!(out.stdout, b"hello world");

    // A value written by someone else where the ring says is read back.
    raw_set(&owner(&s, "from-raw"), "from-raw", 3, b"raw value");
    assert_eq!(ok(mp(&s, &["get", "from-raw"])).stdout, b"raw value");

    // Binary-safe value from stdin, with flags and TTL.
    let binary: &[u8] = b"\x00bin\r\nEND\r\n\xff\tlast\n";
    ok(mp_in(
        &s,
        &["set", "bin", "--flags", "7", "--ttl", "600"],
        binary,
    ));
    assert_eq!(
        raw_get(&owner(&s, "bin"), "bin"),
        Some((7, binary.to_vec()))
    );
    let out = ok(mp(&s, &["get", "bin"]));
    assert_eq!(out.stdout, binary);
    let out = ok(mp(&s, &["get", "bin", "--flags", "--cas"]));
    assert_eq!(out.stdout, binary, "flags and cas go to stderr");
    assert!(out.stderr.contains("flags=7"), "{out:?}");
    assert!(out.stderr.contains("cas="), "{out:?}");

    // Several keys: one line each, escaped values, misses marked.
    let out = ok(mp(
        &s,
        &["get", "greeting", "bin", "nothing-here", "--flags"],
    ));
    assert_eq!(
        out.lines(),
        vec![
            "greeting\thello world\tflags=0".to_string(),
            "bin\t\\x00bin\\r\\nEND\\r\\n\\xff\\tlast\\n\tflags=7".to_string(),
            "nothing-here\t(miss)".to_string(),
        ]
    );
    let out = ok(mp(&s, &["get", "greeting", "from-raw", "--cas"]));
    let lines = out.lines();
    assert!(
        lines[0].starts_with("greeting\thello world\tcas="),
        "{out:?}"
    );
    assert!(lines[1].starts_with("from-raw\traw value\tcas="), "{out:?}");

    // A miss on one key: exit 1, "miss" on stderr, nothing on stdout.
    let out = fails(mp(&s, &["get", "nothing-here"]), 1, "miss");
    assert!(out.stdout.is_empty());

    // add / replace.
    fails(
        mp(&s, &["set", "greeting", "again", "--add"]),
        1,
        "not stored",
    );
    fails(
        mp(&s, &["set", "absent", "x", "--replace"]),
        1,
        "not stored",
    );
    ok(mp(&s, &["set", "fresh", "new", "--add"]));
    ok(mp(&s, &["set", "fresh", "newer", "--replace"]));
    assert_eq!(
        raw_get(&owner(&s, "fresh"), "fresh"),
        Some((0, b"newer".to_vec()))
    );
    // A value that looks like a negative number.
    ok(mp(&s, &["set", "neg", "-5"]));
    assert_eq!(raw_get(&owner(&s, "neg"), "neg"), Some((0, b"-5".to_vec())));

    // touch.
    ok(mp(&s, &["touch", "fresh", "600"]));
    fails(mp(&s, &["touch", "absent", "600"]), 1, "not found");

    // delete: one line per key; exit 1 when one was missing.
    let out = mp(&s, &["delete", "greeting", "absent"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.lines(),
        vec![
            "greeting\tdeleted".to_string(),
            "absent\tnot found".to_string()
        ]
    );
    assert_eq!(raw_get(&home, "greeting"), None);
    let out = ok(mp(&s, &["delete", "bin"]));
    assert_eq!(out.text(), "bin\tdeleted\n");
    assert_eq!(raw_get(&owner(&s, "bin"), "bin"), None);
}

#[test]
fn incr_decr_end_to_end() {
    let servers = cluster(3);
    let s = servers_arg(&servers);
    ok(mp(&s, &["set", "counter", "10"]));
    assert_eq!(ok(mp(&s, &["incr", "counter", "5"])).text(), "15\n");
    assert_eq!(ok(mp(&s, &["incr", "counter"])).text(), "16\n");
    assert_eq!(ok(mp(&s, &["decr", "counter", "100"])).text(), "0\n");
    assert_eq!(ok(mp(&s, &["decr", "counter"])).text(), "0\n");
    assert_eq!(ok(mp(&s, &["incr", "counter", "41"])).text(), "41\n");
    assert_eq!(
        raw_get(&owner(&s, "counter"), "counter"),
        Some((0, b"41".to_vec()))
    );
    fails(mp(&s, &["incr", "no-counter"]), 1, "not found");
    fails(mp(&s, &["decr", "no-counter", "3"]), 1, "not found");
    ok(mp(&s, &["set", "text", "abc"]));
    let out = mp(&s, &["incr", "text"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("multiput: "), "{out:?}");
    fails(mp(&s, &["incr", "counter", "-1"]), 2, "");
}

#[test]
fn env_servers_prefix_and_protocols() {
    let servers = cluster(3);
    let s = servers_arg(&servers);
    let env = [("MULTIPUT_SERVERS", s.as_str())];

    // The prefix goes on the wire; placement uses the key without it.
    ok(run_with(
        &["--prefix", "app:", "set", "user", "v1"],
        &env,
        None,
    ));
    let home = owner(&s, "user");
    assert_eq!(raw_get(&home, "app:user"), Some((0, b"v1".to_vec())));
    assert_eq!(raw_get(&home, "user"), None);
    let out = ok(run_with(&["get", "user", "--prefix", "app:"], &env, None));
    assert_eq!(out.stdout, b"v1");
    fails(run_with(&["get", "user"], &env, None), 1, "miss");

    // Every protocol choice reads and writes the same data.
    for proto in ["auto", "text", "meta"] {
        let key = format!("proto-{proto}");
        ok(run_with(
            &["--protocol", proto, "set", &key, proto],
            &env,
            None,
        ));
        assert_eq!(
            raw_get(&owner(&s, &key), &key),
            Some((0, proto.as_bytes().to_vec()))
        );
        let out = ok(run_with(&["get", &key, "--protocol", proto], &env, None));
        assert_eq!(out.stdout, proto.as_bytes());
    }
}

#[test]
fn binary_keys_reach_items_with_spaces() {
    let servers = cluster(1);
    let s = servers_arg(&servers);
    fails(mp(&s, &["set", "a b", "v"]), 1, "binary_keys");
    ok(mp(&s, &["--binary-keys", "set", "a b", "v"]));
    let out = ok(mp(&s, &["get", "a b", "--binary-keys"]));
    assert_eq!(out.stdout, b"v");
    ok(mp(&s, &["--binary-keys", "delete", "a b"]));
    fails(mp(&s, &["--binary-keys", "get", "a b"]), 1, "miss");
}

#[test]
fn flush_needs_yes() {
    let servers = cluster(2);
    let s = servers_arg(&servers);
    ok(mp(&s, &["set", "keep", "me"]));
    fails(mp(&s, &["flush"]), 2, "--yes");
    assert_eq!(
        raw_get(&owner(&s, "keep"), "keep"),
        Some((0, b"me".to_vec()))
    );
    let out = ok(mp(&s, &["flush", "--yes"]));
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out:?}");
    for m in &servers {
        assert!(lines.contains(&format!("{}\tok", m.addr())), "{out:?}");
    }
    fails(mp(&s, &["get", "keep"]), 1, "miss");
}

#[test]
fn stats_and_health_with_a_killed_server() {
    let servers = cluster(3);
    let s = servers_arg(&servers);
    for i in 0..30 {
        ok(mp(&s, &["set", &format!("item:{i}"), "some value"]));
    }
    let _ = mp(&s, &["get", "item:1", "item:2", "missing"]);

    // All up.
    let out = ok(mp(&s, &["stats"]));
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out:?}");
    for col in [
        "SERVER", "ITEMS", "BYTES", "HITS", "MISSES", "HIT_RATE", "CONNS", "UPTIME", "VERSION",
    ] {
        assert!(lines[0].contains(col), "{out:?}");
    }
    let mut items = 0;
    for m in &servers {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&m.addr()))
            .unwrap_or_else(|| panic!("no row for {}: {out:?}", m.addr()));
        assert!(!row.contains("error"), "{out:?}");
        items += row
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(items, 30, "{out:?}");

    let out = ok(mp(&s, &["stats", "--json"]));
    let json = Parser::parse(&out.text()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let rows = json.arr();
    assert_eq!(rows.len(), 3);
    for (row, m) in rows.iter().zip(&servers) {
        assert_eq!(row.get("server").str(), m.addr());
        assert!(matches!(row.get("ok"), Json::Bool(true)));
        row.get("stats")
            .get("curr_items")
            .str()
            .parse::<u64>()
            .unwrap();
    }

    let out = ok(mp(&s, &["stats", "settings"]));
    for line in out.lines() {
        assert_eq!(line.split('\t').count(), 3, "{line:?}");
    }
    for m in &servers {
        assert!(
            out.text().contains(&format!("{}\tmaxconns\t", m.addr())),
            "{out:?}"
        );
    }

    let out = ok(mp(&s, &["health"]));
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out:?}");
    for m in &servers {
        let row = lines.iter().find(|l| l.starts_with(&m.addr())).unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some("up"), "{out:?}");
    }
    let out = ok(mp(&s, &["health", "--json"]));
    let json = Parser::parse(&out.text()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    for row in json.arr() {
        assert!(matches!(row.get("up"), Json::Bool(true)));
        assert!(matches!(row.get("rtt_ms"), Json::Num(_)));
        assert!(matches!(row.get("error"), Json::Null));
    }

    // One server killed: it shows as down, the others still answer.
    servers[1].kill();
    let dead = servers[1].addr();

    let out = mp(&s, &["health"]);
    assert_eq!(out.code, 2, "{out:?}");
    for m in &servers {
        let row = out
            .lines()
            .into_iter()
            .find(|l| l.starts_with(&m.addr()))
            .unwrap();
        let status = row.split_whitespace().nth(1);
        if m.addr() == dead {
            assert_eq!(status, Some("down"), "{out:?}");
            assert!(
                row.contains(&dead) && row.len() > dead.len() + 20,
                "{out:?}"
            );
        } else {
            assert_eq!(status, Some("up"), "{out:?}");
        }
    }
    let out = mp(&s, &["health", "--json"]);
    assert_eq!(out.code, 2, "{out:?}");
    let json = Parser::parse(&out.text()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let down: Vec<&Json> = json
        .arr()
        .iter()
        .filter(|r| matches!(r.get("up"), Json::Bool(false)))
        .collect();
    assert_eq!(down.len(), 1, "{out:?}");
    assert_eq!(down[0].get("server").str(), dead);
    assert!(!down[0].get("error").str().is_empty());

    let out = mp(&s, &["stats"]);
    assert_eq!(out.code, 2, "{out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out:?}");
    for m in &servers {
        let row = lines.iter().find(|l| l.starts_with(&m.addr())).unwrap();
        if m.addr() == dead {
            assert!(row.contains("error:"), "{out:?}");
        } else {
            assert!(!row.contains("error"), "{out:?}");
        }
    }
    let out = mp(&s, &["stats", "--json"]);
    assert_eq!(out.code, 2, "{out:?}");
    let json = Parser::parse(&out.text()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(matches!(json.arr()[1].get("ok"), Json::Bool(false)));
    assert!(matches!(json.arr()[0].get("ok"), Json::Bool(true)));

    // A key owned by the dead server fails with the connection error, exit 1.
    let key = (0..100)
        .map(|i| format!("item:{i}"))
        .find(|k| owner(&s, k) == dead)
        .expect("some key lives on the killed server");
    let out = fails(mp(&s, &["get", &key]), 1, "multiput: ");
    assert!(out.stderr.contains(&dead), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// (c) bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_keys_are_refused_before_anything_is_sent() {
    // A listener that must never see a connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let s = listener.local_addr().unwrap().to_string();
    let long = "a".repeat(251);

    let out = fails(mp(&s, &["get", "two words"]), 1, "invalid key");
    assert!(out.stderr.starts_with("multiput: "), "{out:?}");
    assert!(out.stderr.contains("space"), "{out:?}");
    let out = fails(mp(&s, &["set", &long, "v"]), 1, "invalid key");
    assert!(out.stderr.contains("251 bytes"), "{out:?}");
    fails(mp(&s, &["get", "fine", &long]), 1, "251 bytes");
    fails(mp(&s, &["get", ""]), 1, "empty");
    fails(mp(&s, &["delete", "ok", "tab\there"]), 1, "invalid key");
    fails(mp(&s, &["incr", "new\nline"]), 1, "invalid key");
    fails(mp(&s, &["touch", "a b", "10"]), 1, "invalid key");
    fails(mp_in(&s, &["set", "a b"], b"value"), 1, "invalid key");
    // The prefix counts towards the 250 bytes.
    fails(
        mp(&s, &["--prefix", &"p".repeat(200), "get", &"k".repeat(51)]),
        1,
        "251 bytes",
    );
    let out = fails(mp(&s, &["ring", &long]), 1, "251 bytes");
    assert!(out.stdout.is_empty());

    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("a connection from {peer} was opened for an invalid key"),
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn bad_servers_and_options_are_usage_errors() {
    for bad in ["h:abc", "h:70000", "a,,b", "[::1", "h:1:2:3", "a b:1"] {
        let out = mp(bad, &["get", "k"]);
        assert_eq!(out.code, 2, "{bad}: {out:?}");
        assert!(out.stderr.contains("invalid server"), "{bad}: {out:?}");
        let out = mp(bad, &["ring", "k"]);
        assert_eq!(out.code, 2, "{bad}: {out:?}");
    }
    let out = run_with(&["ring", "k"], &[("MULTIPUT_SERVERS", "h:abc")], None);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("invalid server"), "{out:?}");

    fails(run(&["get", "k"]), 2, "MULTIPUT_SERVERS");
    fails(run(&["ring", "k"]), 2, "--servers");
    fails(run(&["health"]), 2, "--servers");
    fails(
        mp("h", &["--mode", "jump_hash", "ring", "k"]),
        2,
        "jump_hash",
    );
    fails(mp("h", &["--timeout-ms", "0", "get", "k"]), 2, "0");
    fails(mp("h", &["ring", "--replicas", "0", "k"]), 2, "0");
    fails(
        mp("h", &["set", "k", "v", "--add", "--replace"]),
        2,
        "--replace",
    );
    fails(mp("h", &["stats", "two words"]), 2, "stats group");
    fails(run(&["frobnicate"]), 2, "frobnicate");
    fails(mp("h", &["get"]), 2, "KEY");

    // Help works for every command and mentions the compatibility contract.
    let out = ok(run(&["ring", "--help"]));
    assert!(out.text().contains("OPT_LIBKETAMA_COMPATIBLE"), "{out:?}");
    assert!(out.text().contains("ketama_weighted"), "{out:?}");
    for cmd in [
        "get", "set", "delete", "incr", "decr", "touch", "flush", "stats", "health",
    ] {
        ok(run(&[cmd, "--help"]));
    }
}

#[test]
fn unreachable_server_is_a_clear_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = format!("127.0.0.1:{port}");
    let out = fails(mp(&s, &["get", "k"]), 1, "cannot connect");
    assert!(out.stderr.starts_with("multiput: "), "{out:?}");
    fails(mp(&s, &["set", "k", "v"]), 1, &s);
    let out = mp(&s, &["health"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.text().contains("down"), "{out:?}");
    let out = mp(&s, &["stats"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.text().contains("error:"), "{out:?}");
    fails(mp(&s, &["flush", "--yes"]), 1, "cannot connect");
}

// ---------------------------------------------------------------------------------------------
// (d) replication: --replicas N > 1
// ---------------------------------------------------------------------------------------------

/// The envelope's fixed header length, and its first four bytes (magic and version 1).
const HEADER: usize = 24;
const MAGIC_V1: [u8; 4] = [0xE1, 0x4D, 0x50, 0x01];

/// `multiput --replicas N --servers S ARGS`.
fn mpr(servers: &str, n: usize, args: &[&str]) -> Out {
    let n = n.to_string();
    let mut all = vec!["--servers", servers, "--replicas", &n];
    all.extend_from_slice(args);
    run(&all)
}

/// The first `n` servers of `key`'s preference list, as `multiput ring --replicas n` names them.
fn preference(servers: &str, key: &str, n: usize) -> Vec<String> {
    let out = ok(mp(servers, &["ring", "--replicas", &n.to_string(), key]));
    let line = out.text();
    let mut cols = line.trim_end().split('\t').map(str::to_string);
    assert_eq!(cols.next().as_deref(), Some(key), "{out:?}");
    let list: Vec<String> = cols.collect();
    assert_eq!(list.len(), n, "{out:?}");
    list
}

/// The raw bytes `addr` holds for `key`, asserted to be an enveloped value (flags 0) whose
/// payload is `payload`.
#[track_caller]
fn enveloped_copy(addr: &str, key: &str, payload: &[u8]) -> Vec<u8> {
    let (flags, raw) =
        raw_get(addr, key).unwrap_or_else(|| panic!("{addr} holds no copy of {key:?}"));
    assert_eq!(flags, 0, "{addr}: enveloped copies carry flags 0");
    assert_eq!(raw.len(), HEADER + payload.len(), "{addr}: {raw:?}");
    assert_eq!(raw[..4], MAGIC_V1, "{addr}: {raw:?}");
    assert_eq!(raw[4], 0, "{addr}: kind must be a value: {raw:?}");
    assert_eq!(&raw[HEADER..], payload, "{addr}");
    raw
}

/// Assert that `addr` holds a tombstone for `key`.
#[track_caller]
fn tombstone(addr: &str, key: &str) {
    let (_, raw) = raw_get(addr, key).unwrap_or_else(|| panic!("{addr}: no tombstone for {key}"));
    assert_eq!(
        raw.len(),
        HEADER,
        "{addr}: a tombstone is exactly the header: {raw:?}"
    );
    assert_eq!(raw[..4], MAGIC_V1, "{addr}: {raw:?}");
    assert_eq!(raw[4], 1, "{addr}: kind must be a tombstone: {raw:?}");
}

#[test]
fn replicated_set_puts_an_enveloped_copy_on_every_replica() {
    let servers = cluster(3);
    let s = servers_arg(&servers);

    let out = ok(mpr(&s, 3, &["set", "greeting", "hello world"]));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let copies: Vec<Vec<u8>> = servers
        .iter()
        .map(|m| enveloped_copy(&m.addr(), "greeting", b"hello world"))
        .collect();
    assert!(
        copies.iter().all(|c| *c == copies[0]),
        "one write, one stamp: {copies:?}"
    );

    let out = ok(mpr(&s, 3, &["get", "greeting"]));
    assert_eq!(out.stdout, b"hello world");
    assert!(out.stderr.is_empty(), "{out:?}");

    // --verbose: the stamp read from the envelope, and the replicas, primary first.
    let out = ok(mpr(&s, 3, &["get", "-v", "greeting"]));
    assert_eq!(out.stdout, b"hello world");
    let ts = u64::from_be_bytes(copies[0][8..16].try_into().unwrap());
    let writer = u64::from_be_bytes(copies[0][16..24].try_into().unwrap());
    assert!(out.stderr.contains(&format!("ts={ts} ")), "{out:?}");
    assert!(
        out.stderr.contains(&format!("writer={writer:016x}")),
        "{out:?}"
    );
    assert!(out.stderr.contains("enveloped=yes"), "{out:?}");
    let replicas = preference(&s, "greeting", 3).join(",");
    assert!(
        out.stderr.contains(&format!("replicas={replicas}")),
        "{out:?}"
    );

    // Binary-safe from stdin, with a TTL; --replicas after the subcommand works too.
    let binary: &[u8] = b"\x00bin\r\nEND\r\n\xff\tlast\n";
    ok(mp_in(
        &s,
        &["set", "bin", "--ttl", "600", "--replicas", "3"],
        binary,
    ));
    for m in &servers {
        enveloped_copy(&m.addr(), "bin", binary);
    }
    assert_eq!(ok(mpr(&s, 3, &["get", "bin"])).stdout, binary);

    // Several keys: the plain command's line format.
    let out = ok(mpr(
        &s,
        3,
        &["get", "greeting", "bin", "nothing-here", "--flags"],
    ));
    assert_eq!(
        out.lines(),
        vec![
            "greeting\thello world\tflags=0".to_string(),
            "bin\t\\x00bin\\r\\nEND\\r\\n\\xff\\tlast\\n\tflags=0".to_string(),
            "nothing-here\t(miss)".to_string(),
        ]
    );
    let out = fails(mpr(&s, 3, &["get", "nothing-here"]), 1, "miss");
    assert!(out.stdout.is_empty(), "{out:?}");

    // --replicas 2 writes the key's first two servers only.
    ok(mpr(&s, 2, &["set", "two", "copies"]));
    let pair = preference(&s, "two", 2);
    for m in &servers {
        if pair.contains(&m.addr()) {
            enveloped_copy(&m.addr(), "two", b"copies");
        } else {
            assert_eq!(
                raw_get(&m.addr(), "two"),
                None,
                "{} is not a replica",
                m.addr()
            );
        }
    }
    assert_eq!(ok(mpr(&s, 2, &["get", "two"])).stdout, b"copies");

    // A plain value (written without --replicas) reads back as is, reported as not enveloped.
    ok(mp(&s, &["set", "plain", "old style"]));
    let out = ok(mpr(&s, 3, &["get", "--verbose", "plain"]));
    assert_eq!(out.stdout, b"old style");
    assert!(out.stderr.contains("enveloped=no"), "{out:?}");

    // --replicas 1 is today's plain behaviour: no envelope, one server.
    ok(mpr(&s, 1, &["set", "one", "plain bytes"]));
    let home = owner(&s, "one");
    for m in &servers {
        let expected = (m.addr() == home).then(|| (0, b"plain bytes".to_vec()));
        assert_eq!(raw_get(&m.addr(), "one"), expected);
    }

    // stats is unaffected by --replicas.
    let out = ok(mpr(&s, 3, &["stats"]));
    assert_eq!(out.lines().len(), 4, "{out:?}");
}

#[test]
fn replicated_get_and_set_with_a_killed_server() {
    let servers = cluster(3);
    let s = servers_arg(&servers);
    ok(mpr(&s, 3, &["set", "k", "v1"]));

    // Kill the key's primary: the plain client has lost the key, the replicas have not.
    let order = preference(&s, "k", 3);
    let dead = order[0].clone();
    let live: Vec<&String> = order[1..].iter().collect();
    servers
        .iter()
        .find(|m| m.addr() == dead)
        .expect("the primary is one of ours")
        .kill();
    let out = fails(mp(&s, &["get", "k"]), 1, &dead);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(ok(mpr(&s, 2, &["get", "k"])).stdout, b"v1");
    assert_eq!(ok(mpr(&s, 3, &["get", "k"])).stdout, b"v1");
    let out = ok(mpr(&s, 3, &["get", "-v", "k"]));
    assert!(out.stderr.contains(&format!("{dead}(failed)")), "{out:?}");

    // Default policy (all): a fresh command has not marked the server down before writing, so
    // its refusal is a failed replica and the policy is not met. The live replicas keep the
    // new value.
    let out = fails(mpr(&s, 3, &["set", "k", "v2"]), 1, "replicated write");
    assert!(out.stderr.contains(&dead), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    for addr in &live {
        enveloped_copy(addr, "k", b"v2");
    }
    assert_eq!(ok(mpr(&s, 3, &["get", "k"])).stdout, b"v2");

    // A quorum the live replicas can meet: success, the missed replica named on stderr.
    let out = ok(mpr(
        &s,
        3,
        &["--write-policy", "quorum:1", "set", "k", "v3"],
    ));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("warning"), "{out:?}");
    assert!(out.stderr.contains(&dead), "{out:?}");
    for addr in &live {
        enveloped_copy(addr, "k", b"v3");
    }
    ok(mpr(
        &s,
        3,
        &["--write-policy", "quorum:2", "set", "k", "v4"],
    ));
    ok(mpr(&s, 3, &["--write-policy", "one", "set", "k", "v4"]));
    let out = fails(
        mpr(&s, 3, &["--write-policy", "quorum:3", "set", "k", "v5"]),
        1,
        &dead,
    );
    assert!(out.stderr.contains("replicated write"), "{out:?}");

    // Reads: a quorum of 3 cannot be met, 2 can; first-hit skips the dead primary.
    fails(
        mpr(&s, 3, &["--read-policy", "quorum:3", "get", "k"]),
        1,
        "replicated read",
    );
    let out = ok(mpr(&s, 3, &["--read-policy", "quorum:2", "get", "k"]));
    assert_eq!(
        out.stdout, b"v5",
        "the failed write still reached the live replicas"
    );
    let out = ok(mpr(&s, 3, &["--read-policy", "first", "get", "k"]));
    assert_eq!(out.stdout, b"v5");

    // Deletes follow the same policy.
    let out = fails(mpr(&s, 3, &["delete", "k"]), 1, "replicated delete");
    assert_eq!(out.text(), "k\t(error)\n");
    let out = ok(mpr(&s, 3, &["--write-policy", "quorum:2", "delete", "k"]));
    assert_eq!(out.text(), "k\tdeleted\n");
    assert!(out.stderr.contains(&dead), "{out:?}");
    for addr in &live {
        tombstone(addr, "k");
    }
    fails(mpr(&s, 3, &["get", "k"]), 1, "miss");
}

#[test]
fn replicated_delete_writes_tombstones_that_outlive_old_copies() {
    let servers = cluster(3);
    let s = servers_arg(&servers);
    ok(mpr(&s, 3, &["set", "k", "old value"]));
    let primary = preference(&s, "k", 3)[0].clone();
    let old = enveloped_copy(&primary, "k", b"old value");

    let out = ok(mpr(&s, 3, &["delete", "k"]));
    assert_eq!(out.text(), "k\tdeleted\n");
    for m in &servers {
        tombstone(&m.addr(), "k");
    }
    let out = fails(mpr(&s, 3, &["get", "k"]), 1, "miss");
    assert!(out.stdout.is_empty(), "{out:?}");

    // A replica that missed the delete (here: the old copy put back on the primary) cannot
    // bring the value back: the tombstone is later.
    raw_set(&primary, "k", 0, &old);
    let out = fails(mpr(&s, 3, &["get", "k"]), 1, "miss");
    assert!(out.stdout.is_empty(), "{out:?}");
    raw_set(&primary, "k", 0, &old);
    let out = fails(mpr(&s, 2, &["get", "-v", "k"]), 1, "miss");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = mpr(&s, 3, &["get", "k", "other"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.lines(), vec!["k\t(miss)", "other\t(miss)"]);

    // A later set wins over the tombstone.
    ok(mpr(&s, 3, &["set", "k", "new value"]));
    assert_eq!(ok(mpr(&s, 3, &["get", "k"])).stdout, b"new value");

    // Several keys, including one that never existed: a tombstone is written either way.
    ok(mpr(&s, 3, &["set", "a", "1"]));
    let out = ok(mpr(&s, 3, &["delete", "a", "never-set"]));
    assert_eq!(out.lines(), vec!["a\tdeleted", "never-set\tdeleted"]);
    for m in &servers {
        tombstone(&m.addr(), "a");
        tombstone(&m.addr(), "never-set");
    }
    fails(mpr(&s, 3, &["get", "a"]), 1, "miss");
}

#[test]
fn replicated_counters_conditional_stores_and_touch() {
    let servers = cluster(3);
    let s = servers_arg(&servers);

    // Counters: exact, on every replica, with plain incr's conventions (missing key = error,
    // decr stops at 0).
    fails(mpr(&s, 2, &["incr", "hits"]), 1, "not found");
    ok(mpr(&s, 2, &["set", "hits", "10"]));
    assert_eq!(ok(mpr(&s, 2, &["incr", "hits", "5"])).text(), "15\n");
    assert_eq!(ok(mpr(&s, 2, &["decr", "hits", "20"])).text(), "0\n");
    assert_eq!(ok(mpr(&s, 2, &["incr", "hits"])).text(), "1\n");
    for addr in preference(&s, "hits", 2) {
        enveloped_copy(&addr, "hits", b"1");
    }
    assert_eq!(ok(mpr(&s, 2, &["get", "hits"])).stdout, b"1");
    fails(
        mpr(&s, 2, &["incr", "hits", "9223372036854775808"]),
        2,
        "too large",
    );
    ok(mpr(&s, 2, &["set", "name", "Ada"]));
    fails(mpr(&s, 2, &["incr", "name"]), 1, "non-numeric");

    // add: only when no live value; a deleted (tombstoned) key counts as missing.
    fails(
        mpr(&s, 2, &["set", "name", "Bob", "--add"]),
        1,
        "not stored",
    );
    assert_eq!(ok(mpr(&s, 2, &["get", "name"])).stdout, b"Ada");
    ok(mpr(&s, 2, &["set", "fresh", "v1", "--add"]));
    for addr in preference(&s, "fresh", 2) {
        enveloped_copy(&addr, "fresh", b"v1");
    }
    ok(mpr(&s, 2, &["delete", "fresh"]));
    ok(mpr(&s, 2, &["set", "fresh", "v2", "--add"]));
    assert_eq!(ok(mpr(&s, 2, &["get", "fresh"])).stdout, b"v2");

    // replace: only when a live value exists.
    fails(
        mpr(&s, 2, &["set", "absent", "x", "--replace"]),
        1,
        "not stored",
    );
    assert_eq!(raw_get(&owner(&s, "absent"), "absent"), None);
    ok(mpr(&s, 2, &["set", "name", "Cy", "--replace"]));
    for addr in preference(&s, "name", 2) {
        enveloped_copy(&addr, "name", b"Cy");
    }

    // touch: the latest copy, with the new TTL, on every replica.
    fails(mpr(&s, 2, &["touch", "absent", "60"]), 1, "not found");
    ok(mpr(&s, 2, &["touch", "name", "1"]));
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    for addr in preference(&s, "name", 2) {
        assert_eq!(raw_get(&addr, "name"), None, "{addr} still holds name");
    }
    fails(mpr(&s, 2, &["get", "name"]), 1, "miss");

    // What replication still does not cover is refused before anything is sent: a listener
    // that owns the key must never see a connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let l = listener.local_addr().unwrap().to_string();
    let two = format!("{l},{}", servers[0].addr());
    let key = (0..100)
        .map(|i| format!("x{i}"))
        .find(|k| owner(&two, k) == l)
        .expect("some key lives on the listener");
    for args in [
        vec!["set", key.as_str(), "1", "--flags", "5"],
        vec!["get", key.as_str(), "--cas"],
    ] {
        let out = fails(mpr(&two, 2, &args), 2, "not supported for replicated keys");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("a connection from {peer} was opened for a refused command"),
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn replication_options_are_checked() {
    let s = "192.0.2.1:11211,192.0.2.2:11211,192.0.2.3:11211";
    // No connection is needed to refuse these.
    fails(mpr(s, 4, &["get", "k"]), 2, "number of servers (3)");
    fails(mpr(s, 4, &["set", "k", "v"]), 2, "number of servers (3)");
    fails(
        mpr(s, 2, &["--write-policy", "quorum:3", "set", "k", "v"]),
        2,
        "write quorum",
    );
    fails(
        mpr(s, 2, &["--read-policy", "quorum:3", "get", "k"]),
        2,
        "read quorum",
    );
    fails(
        mpr(s, 2, &["--write-policy", "quorum:0", "get", "k"]),
        2,
        "at least 1",
    );
    fails(
        mpr(s, 2, &["--write-policy", "most", "get", "k"]),
        2,
        "quorum:W",
    );
    fails(
        mpr(s, 2, &["--read-policy", "quorum:x", "get", "k"]),
        2,
        "quorum:x",
    );
    fails(mpr(s, 0, &["get", "k"]), 2, "0");
    // Policy options without replication are a mistake, not silently ignored.
    for opt in [
        vec!["--write-policy", "one"],
        vec!["--read-policy", "first"],
        vec!["--failover"],
    ] {
        let mut args = opt.clone();
        args.extend(["get", "k"]);
        fails(mp(s, &args), 2, "--replicas");
    }

    // Help texts describe the options and the refusals.
    let out = ok(run(&["--help"]));
    for needle in [
        "--replicas",
        "--write-policy",
        "--read-policy",
        "--failover",
        "envelope",
    ] {
        assert!(out.text().contains(needle), "{needle}: {out:?}");
    }
    for cmd in ["get", "set", "delete"] {
        let out = ok(run(&[cmd, "--help"]));
        assert!(out.text().contains("--replicas"), "{cmd}: {out:?}");
    }
    let out = ok(run(&["incr", "--help"]));
    assert!(out.text().contains("exact"), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// TLS and authentication
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_and_authentication_flags_and_their_environment() {
    let pki = multiput_tests::certs::Pki::new();
    let auth = pki.dir.join("auth");
    std::fs::write(&auth, "app:s3cret\n").unwrap();
    let pw = pki.dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let m = Memcached::builder()
        .args(pki.memcached_args(&pki.server, false))
        .arg("-Y")
        .arg(&auth)
        .listening_only()
        .start();
    let addr = m.addr();
    let ca = pki.ca.to_str().unwrap();
    let pw = pw.to_str().unwrap();
    let flags = [
        "--servers",
        &addr,
        "--tls-ca",
        ca,
        "--username",
        "app",
        "--password-file",
        pw,
    ];
    let set = run_with(&[&flags[..], &["set", "cli:tls", "v"]].concat(), &[], None);
    assert_eq!(set.code, 0, "{set:?}");
    let get = run_with(&[&flags[..], &["get", "cli:tls"]].concat(), &[], None);
    assert_eq!(get.code, 0, "{get:?}");
    assert_eq!(get.text().trim(), "v");
    // The same through the environment (the password never on the command line).
    let env = [
        ("MULTIPUT_SERVERS", addr.as_str()),
        ("MULTIPUT_TLS_CA", ca),
        ("MULTIPUT_USERNAME", "app"),
        ("MULTIPUT_PASSWORD", "s3cret"),
    ];
    let get = run_with(&["get", "cli:tls"], &env, None);
    assert_eq!(get.code, 0, "{get:?}");
    assert_eq!(get.text().trim(), "v");
    // Wrong password: the auth error, without the password.
    let env = [
        ("MULTIPUT_SERVERS", addr.as_str()),
        ("MULTIPUT_TLS_CA", ca),
        ("MULTIPUT_USERNAME", "app"),
        ("MULTIPUT_PASSWORD", "wrong-pw"),
    ];
    let bad = run_with(&["get", "cli:tls"], &env, None);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("authentication failed"), "{bad:?}");
    assert!(!bad.stderr.contains("wrong-pw"), "{bad:?}");
    // No TLS: the server requires it, and the error says so.
    let plain = run_with(&["--servers", &addr, "get", "cli:tls"], &[], None);
    assert_ne!(plain.code, 0, "{plain:?}");
    assert!(plain.stderr.contains("tls"), "{plain:?}");
    // A user name without a password is a usage error.
    let usage = run_with(
        &["--servers", &addr, "--username", "app", "get", "k"],
        &[],
        None,
    );
    assert_eq!(usage.code, 2, "{usage:?}");
}
