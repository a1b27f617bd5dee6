//! The command line: global options and subcommands (clap derive).

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};
use multiput::{ProtocolChoice, RingMode, ServerSpec};

const ABOUT: &str = "Where keys live on a memcached fleet, and get/set/delete/incr, stats and \
                     health of its servers.";

const LONG_ABOUT: &str = "\
Where keys live on a memcached fleet, and get/set/delete/incr, stats and health of its servers.

Keys are placed on the servers with libmemcached's ketama ring, exactly as php-memcached \
(OPT_LIBKETAMA_COMPATIBLE) and pylibmc (ketama_weighted) place them, so this tool reads and \
writes the same server those clients use for a key. List the servers in the same order as \
those clients do.";

const AFTER_HELP: &str = "\
Examples:
  multiput --servers 10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211:2 ring user:42 cart:7
  export MULTIPUT_SERVERS=10.0.0.1:11211,10.0.0.2:11211
  multiput health
  multiput stats
  multiput set greeting 'hello world' --ttl 300
  multiput get greeting
  printf '%s\\n' user:1 user:2 | multiput ring

Exit status:
  0  success
  1  an error (printed as `multiput: ...` on stderr), a miss, or a missing key
  2  a usage error; for `stats` and `health`: at least one server did not answer";

const RING_ABOUT: &str = "Print the server that owns each key (computed locally, no connection)";

const RING_LONG_ABOUT: &str = "\
Print the server that owns each key on the ketama ring.

Placement is libmemcached 1.1's consistent hashing, bit for bit. With the default mode \
(libketama_compatible) it equals php-memcached with Memcached::OPT_LIBKETAMA_COMPATIBLE => true \
(Memcached::getServerByKey) and pylibmc with behaviors={\"ketama_weighted\": True}. \
`--mode ketama_md5` equals php-memcached OPT_DISTRIBUTION => DISTRIBUTION_CONSISTENT with \
OPT_HASH => HASH_MD5, and pylibmc {\"ketama\": True, \"hash\": \"md5\"}.

Nothing is sent over the network and no host name is resolved: the ring hashes the host names \
exactly as written in --servers (`cache1` and `cache1.example.com` are different positions). \
A weight of 0 means 1. Give the servers in the same order as the other clients add them: when \
two servers' points tie, the one listed first wins. A --prefix is not hashed (as in \
libmemcached); it only counts towards the 250-byte key limit.

Keys come from the arguments or, when there are none, from standard input, one per line (a \
trailing CR is removed). Output is one line per key, in input order:

  KEY<TAB>HOST:PORT

with the port always written. With --replicas N the line lists the first N distinct servers \
met walking the ring clockwise from the key (its preference list; the first is the owner):

  KEY<TAB>OWNER<TAB>SECOND<TAB>...

An invalid key (an empty line, a space or control character, more than 250 bytes) is reported \
on stderr; the other keys are still printed and the exit status is 1.";

const RING_AFTER_HELP: &str = "\
Examples:
  multiput ring --servers 192.0.2.11,192.0.2.12,192.0.2.13:11211:2 user:42 cart:7
  multiput ring --servers a:11211,b:11211,c:11211 --replicas 2 < keys.txt
  multiput ring --servers a:11211,b:11211 -- -key-starting-with-a-dash";

/// The `multiput` command line.
#[derive(Debug, Parser)]
#[command(
    name = "multiput",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// The memcached servers, comma-separated, in configuration order:
    /// HOST, HOST:PORT or HOST:PORT:WEIGHT ([IPV6]:PORT:WEIGHT for IPv6). The port defaults to
    /// 11211 and the weight to 1.
    #[arg(
        long,
        global = true,
        env = "MULTIPUT_SERVERS",
        value_delimiter = ',',
        value_parser = parse_server,
        value_name = "HOST:PORT[:WEIGHT],..."
    )]
    pub servers: Vec<ServerSpec>,

    /// Key placement: libketama_compatible (php-memcached OPT_LIBKETAMA_COMPATIBLE, pylibmc
    /// ketama_weighted) or ketama_md5 (consistent distribution with the MD5 hash).
    #[arg(long, global = true, value_enum, default_value_t = Mode::LibketamaCompatible)]
    pub mode: Mode,

    /// Bound, in milliseconds, on connecting to a server and on each request.
    #[arg(
        long = "timeout-ms",
        global = true,
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    pub timeout_ms: u64,

    /// Protocol: auto (meta where the server has it, else text), text, or meta.
    #[arg(long, global = true, value_enum, default_value_t = Protocol::Auto)]
    pub protocol: Protocol,

    /// A namespace put in front of every key on the wire (php-memcached OPT_PREFIX_KEY). It is
    /// not hashed: keys are placed by the key without it.
    #[arg(long, global = true, value_name = "PREFIX")]
    pub prefix: Option<OsString>,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// libmemcached KETAMA_WEIGHTED: php-memcached OPT_LIBKETAMA_COMPATIBLE, pylibmc
    /// ketama_weighted (the default).
    #[value(name = "libketama_compatible", alias = "libketama-compatible")]
    LibketamaCompatible,
    /// libmemcached KETAMA with the MD5 hash: 100 points per server (weights > 1 switch to the
    /// weighted layout, as libmemcached does).
    #[value(name = "ketama_md5", alias = "ketama-md5")]
    KetamaMd5,
}

impl From<Mode> for RingMode {
    fn from(m: Mode) -> RingMode {
        match m {
            Mode::LibketamaCompatible => RingMode::LibketamaCompatible,
            Mode::KetamaMd5 => RingMode::KetamaMd5,
        }
    }
}

/// `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Probe each server: meta protocol where it answers, text elsewhere.
    Auto,
    /// Always the text protocol.
    Text,
    /// Always the meta protocol (memcached 1.6+).
    Meta,
}

impl From<Protocol> for ProtocolChoice {
    fn from(p: Protocol) -> ProtocolChoice {
        match p {
            Protocol::Auto => ProtocolChoice::Auto,
            Protocol::Text => ProtocolChoice::Text,
            Protocol::Meta => ProtocolChoice::Meta,
        }
    }
}

fn parse_server(s: &str) -> Result<ServerSpec, String> {
    s.parse::<ServerSpec>().map_err(|e| match e {
        multiput::Error::Config(msg) => msg,
        other => other.to_string(),
    })
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(about = RING_ABOUT, long_about = RING_LONG_ABOUT, after_help = RING_AFTER_HELP)]
    Ring(RingArgs),

    /// Read keys: one key prints its value as is; several print KEY<TAB>VALUE lines
    #[command(long_about = "\
Read keys.

With one key the value's bytes are written to stdout unchanged (binary-safe, no newline \
added); a miss prints `miss` on stderr and exits with status 1. --flags and --cas are then \
printed on stderr (`flags=N cas=N`), so stdout stays the bare value.

With several keys (fetched in one request per server) each key gets a line: \
KEY<TAB>VALUE, with tabs, newlines, backslashes and other non-printable bytes escaped \
(\\t \\n \\\\ \\xNN), or KEY<TAB>(miss). --flags and --cas append flags=N and cas=N \
columns. The exit status is 0 unless a server failed.")]
    Get(GetArgs),

    /// Store a value (from the argument, or all of stdin when omitted)
    #[command(
        long_about = "\
Store a value under KEY.

The value is the VALUE argument or, when it is omitted, everything read from standard input, \
byte for byte (a trailing newline is kept: use `printf` rather than `echo` when that matters). \
By default the value is stored unconditionally (set); --add stores only if the key is missing, \
--replace only if it exists, and both fail with `not stored` otherwise. Prints nothing on \
success.",
        allow_negative_numbers = true
    )]
    Set(SetArgs),

    /// Delete keys; prints KEY<TAB>deleted or KEY<TAB>not found (exit 1 if any was missing)
    Delete {
        /// The keys to delete.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<OsString>,
    },

    /// Add DELTA (default 1) to a decimal counter and print the new value
    #[command(long_about = "\
Add DELTA (default 1) to the decimal number stored under KEY and print the new value. The \
counter wraps at 2^64. A missing key is an error (exit 1): create it first, e.g. \
`multiput set KEY 0`.")]
    Incr(ArithArgs),

    /// Subtract DELTA (default 1) from a decimal counter (stops at 0) and print the new value
    #[command(long_about = "\
Subtract DELTA (default 1) from the decimal number stored under KEY and print the new value. \
memcached stops at 0 rather than going negative. A missing key is an error (exit 1).")]
    Decr(ArithArgs),

    /// Give an existing key a new TTL (exit 1 if the key is missing)
    Touch {
        /// The key.
        key: OsString,
        /// New expiration: 0 never expires, up to 2592000 (30 days) is seconds from now, more
        /// is a Unix timestamp.
        ttl: u32,
    },

    /// Invalidate every item on every server (flush_all); needs --yes
    Flush {
        /// Seconds before the flush takes effect on each server.
        #[arg(long, value_name = "SECONDS")]
        delay: Option<u32>,
        /// Confirm: flushing deletes the data of the whole fleet.
        #[arg(long)]
        yes: bool,
    },

    /// Per-server statistics table, or one stats group (settings, slabs, items, ...)
    #[command(long_about = "\
Without GROUP: one row per server with items (curr_items), bytes in use, get hits and misses, \
the hit rate, open connections, uptime and version. A server that cannot be reached shows its \
error in its row; the exit status is then 2.

With GROUP (for example `settings`, `slabs`, `items`, `conns`): the raw `stats GROUP` output of \
every server as SERVER<TAB>NAME<TAB>VALUE lines; errors go to stderr (exit 2).")]
    Stats {
        /// A stats group: settings, slabs, items, sizes, conns, ...
        group: Option<String>,
        /// Print JSON instead of a table (all stats, values as strings).
        #[arg(long)]
        json: bool,
    },

    /// Is every server up? Round-trip time and version per server (exit 2 if any is down)
    #[command(long_about = "\
Check every server in parallel: open a connection (timed as CONNECT, which includes the \
protocol probe), then time one `version` round trip on it (RTT). Each row shows up or down, \
the two times in milliseconds, the version, and the error for a server that is down. The exit \
status is 0 when every server is up, 2 when any is down.")]
    Health {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `multiput ring`.
#[derive(Debug, Args)]
pub struct RingArgs {
    /// Keys to place; when none are given they are read from stdin, one per line.
    #[arg(value_name = "KEY")]
    pub keys: Vec<OsString>,
    /// Also list the next servers of each key's preference list: N servers per key in all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: Option<u32>,
}

/// `multiput get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The keys to read.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<OsString>,
    /// Also show the client flags stored with each value.
    #[arg(long)]
    pub flags: bool,
    /// Also show each value's CAS unique (uses gets).
    #[arg(long)]
    pub cas: bool,
}

/// `multiput set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key.
    pub key: OsString,
    /// The value; read from stdin when omitted.
    pub value: Option<OsString>,
    /// Expiration: 0 (the default) never expires, up to 2592000 (30 days) is seconds from now,
    /// more is a Unix timestamp.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub ttl: u32,
    /// Client flags to store with the value.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub flags: u32,
    /// Store only if the key does not exist yet.
    #[arg(long, conflicts_with = "replace")]
    pub add: bool,
    /// Store only if the key already exists.
    #[arg(long)]
    pub replace: bool,
}

/// `multiput incr` / `multiput decr`.
#[derive(Debug, Args)]
pub struct ArithArgs {
    /// The counter's key.
    pub key: OsString,
    /// The amount (a 64-bit unsigned number).
    #[arg(default_value_t = 1)]
    pub delta: u64,
}
