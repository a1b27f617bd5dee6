//! `multiput`: where a key lives on the ring, get/set/delete/incr, stats and health of a
//! memcached fleet, and a Prometheus exporter for it. Built on the blocking client of the
//! `multiput` core.

mod args;
mod commands;
mod exporter;
mod output;
mod replicated_cmd;
mod ring_cmd;

use std::io;
use std::process::ExitCode;

use clap::Parser;

/// Why the command stopped: printed as `multiput: <msg>` with exit status `code`.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    /// `None` for a quiet exit (the reader of stdout went away).
    pub msg: Option<String>,
}

impl Failure {
    /// A runtime error: exit status 1.
    pub fn error(msg: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            msg: Some(msg.into()),
        }
    }

    /// A usage error: exit status 2, like clap's.
    pub fn usage(msg: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            msg: Some(msg.into()),
        }
    }
}

impl From<multiput::Error> for Failure {
    fn from(e: multiput::Error) -> Failure {
        Failure::error(e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // `multiput ring ... | head`: the reader is done, so are we.
            Failure { code: 0, msg: None }
        } else {
            Failure::error(format!("I/O error: {e}"))
        }
    }
}

fn main() -> ExitCode {
    let args::Invocation { global, command } = args::Invocation::parse();
    let result = match command {
        args::AnyCommand::Fleet(command) => commands::run(args::Cli { global, command }),
        args::AnyCommand::Exporter(a) => exporter::run(&global, a),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            if let Some(msg) = f.msg {
                eprintln!("multiput: {msg}");
            }
            ExitCode::from(f.code)
        }
    }
}
