//! `multiput ring`: key placement, computed locally. Opens no socket and resolves no name.

use std::io::{self, BufRead, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use multiput::cluster::Cluster;

use crate::args::{Global, RingArgs};
use crate::commands::{config, os_bytes};
use crate::Failure;

pub fn run(g: &Global, a: RingArgs) -> Result<ExitCode, Failure> {
    // The cluster holds the ring and the key rules (prefix included) the client applies; it is
    // pure state: building it and routing through it does no I/O.
    let cluster = Cluster::new(config(g)?.build_config()?)?;
    let ring = cluster.ring();
    let addresses: Vec<String> = ring.servers().iter().map(|s| s.address()).collect();
    let replicas = g.replicas as usize;

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut invalid = 0usize;
    let mut place = |key: &[u8], origin: &dyn Fn() -> String| -> io::Result<()> {
        let owner = match cluster.route(key) {
            Ok(owner) => owner,
            Err(e) => {
                invalid += 1;
                out.flush()?;
                eprintln!("multiput: {}: {e}", origin());
                return Ok(());
            }
        };
        out.write_all(key)?;
        if replicas <= 1 {
            out.write_all(b"\t")?;
            out.write_all(addresses[owner].as_bytes())?;
        } else {
            for s in ring.preference_list(key, replicas) {
                out.write_all(b"\t")?;
                out.write_all(addresses[s].as_bytes())?;
            }
        }
        out.write_all(b"\n")
    };

    if a.keys.is_empty() {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            eprintln!("multiput: reading keys from standard input, one per line (end with Ctrl-D)");
        }
        let mut input = stdin.lock();
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            number += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            place(&line, &|| {
                format!("line {number} {}", crate::output::key_for_message(&line))
            })?;
        }
    } else {
        for (i, key) in a.keys.iter().enumerate() {
            let key = os_bytes(key);
            place(key, &|| {
                format!("argument {} {}", i + 1, crate::output::key_for_message(key))
            })?;
        }
    }
    out.flush()?;
    drop(out);

    if invalid > 0 {
        Err(Failure::error(format!(
            "{invalid} invalid key(s) skipped (see above)"
        )))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
