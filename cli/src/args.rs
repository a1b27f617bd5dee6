//! The command line: global options and subcommands (clap derive).

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};
use multiput::{ProtocolChoice, ReadPolicy, RingMode, ServerSpec, WritePolicy};

const ABOUT: &str = "Where keys live on a memcached fleet, and get/set/delete/incr, stats and \
                     health of its servers.";

const LONG_ABOUT: &str = "\
Where keys live on a memcached fleet, and get/set/delete/incr, stats and health of its servers.

Keys are placed on the servers with libmemcached's ketama ring, exactly as php-memcached \
(OPT_LIBKETAMA_COMPATIBLE) and pylibmc (ketama_weighted) place them, so this tool reads and \
writes the same server those clients use for a key. List the servers in the same order as \
those clients do.

Replication: with --replicas N (N > 1), get, set and delete work on N copies of each key, kept \
on the first N distinct servers of the key's ring preference list, exactly as multiput's \
replicated clients in every language keep them. Each copy is stored inside multiput's 24-byte \
envelope (a timestamp and the writer's id; see docs/envelope.md): a read returns the latest \
copy and writes it back to replicas whose copy is missing or older (read repair), and a delete \
writes a tombstone so that a replica that missed it cannot bring the value back. Read such keys \
with the same --replicas: a plain read (--replicas 1, the default) returns the stored bytes, \
envelope included. incr, decr, touch and set --add/--replace work on replicated keys too: they \
are serialized by CAS on the key's primary replica (docs/recipes.md), then written to every \
replica under a new stamp; they fail rather than act elsewhere while the primary is down. \
ring, stats, health, flush and exporter are unaffected, except that `ring --replicas N` lists each \
key's N servers.";

const AFTER_HELP: &str = "\
Examples:
  multiput --servers 10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211:2 ring user:42 cart:7
  export MULTIPUT_SERVERS=10.0.0.1:11211,10.0.0.2:11211
  multiput health
  multiput stats
  multiput set greeting 'hello world' --ttl 300
  multiput get greeting
  printf '%s\\n' user:1 user:2 | multiput ring
  multiput --replicas 3 set user:42 Ada
  multiput --replicas 3 --write-policy quorum:2 set user:42 Ada
  multiput --replicas 3 get -v user:42
  multiput --replicas 3 delete user:42
  multiput exporter --listen 127.0.0.1:9150    # Prometheus metrics of every server

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
OPT_HASH => HASH_MD5, and pylibmc {\"ketama\": True, \"hash\": \"md5\"}. `--mode modula` is \
libmemcached's default (not consistent) distribution, what php-memcached and pylibmc do when \
no distribution option is set: one-at-a-time hash of the key modulo the server count. \
`--mode rendezvous` is pymemcache's HashClient (Django's PyMemcacheCache): the server with the \
highest murmur3 score of \"host:port-key\".

Nothing is sent over the network and no host name is resolved: the ring hashes the host names \
exactly as written in --servers (`cache1` and `cache1.example.com` are different positions). \
A weight of 0 means 1. Give the servers in the same order as the other clients add them: when \
two servers' points tie, the one listed first wins. A --prefix is not hashed (as in \
libmemcached); it only counts towards the 250-byte key limit.

Keys come from the arguments or, when there are none, from standard input, one per line (a \
trailing CR is removed). Output is one line per key, in input order:

  KEY<TAB>HOST:PORT

with the port always written. With --replicas N (N > 1) the line lists the first N distinct \
servers met walking the ring clockwise from the key (its preference list; the first is the \
owner), the servers `get`, `set` and `delete --replicas N` use for it. N may exceed the number \
of servers here: each server is then listed once.

  KEY<TAB>OWNER<TAB>SECOND<TAB>...

An invalid key (an empty line, a space or control character, more than 250 bytes) is reported \
on stderr; the other keys are still printed and the exit status is 1.";

const RING_AFTER_HELP: &str = "\
Examples:
  multiput ring --servers 192.0.2.11,192.0.2.12,192.0.2.13:11211:2 user:42 cart:7
  multiput ring --servers a:11211,b:11211,c:11211 --replicas 2 < keys.txt
  multiput ring --servers a:11211,b:11211 -- -key-starting-with-a-dash";

/// The `multiput` command line, as parsed: the fleet commands ([`Command`], run by
/// `commands::run` as a [`Cli`]) and the long-running `exporter`.
#[derive(Debug, Parser)]
#[command(
    name = "multiput",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Invocation {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: AnyCommand,
}

/// Every subcommand: the one-shot fleet commands, listed first, then `exporter`.
#[derive(Debug, Subcommand)]
pub enum AnyCommand {
    #[command(flatten)]
    Fleet(Command),

    #[command(
        about = EXPORTER_ABOUT,
        long_about = EXPORTER_LONG_ABOUT,
        after_help = EXPORTER_AFTER_HELP
    )]
    Exporter(ExporterArgs),
}

/// A one-shot fleet command and the global options.
#[derive(Debug)]
pub struct Cli {
    pub global: Global,
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
    /// ketama_weighted), ketama_md5 (consistent distribution with the MD5 hash) or modula
    /// (libmemcached's default distribution: php-memcached and pylibmc without options), or
    /// rendezvous (pymemcache's HashClient, Django's PyMemcacheCache).
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

    /// Accept keys with spaces and control bytes (up to 186 bytes) and send them base64-encoded
    /// over the meta protocol: the items PECL memcached writes with OPT_BINARY_PROTOCOL.
    #[arg(long, global = true)]
    pub binary_keys: bool,

    /// Copies per key. 1 (the default) is plain memcached: one server per key, values stored
    /// as given. N > 1: get, set and delete keep N enveloped copies on the key's first N ring
    /// servers (at most the number of servers); `ring` lists those N servers.
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub replicas: u32,

    /// With --replicas N > 1: when set and delete succeed. all (the default): every replica
    /// must store the copy, except servers already marked down by this command (a server that
    /// refuses the connection during the write counts as a failure); quorum:W: at least W of
    /// the N; one: any one.
    #[arg(
        long = "write-policy",
        global = true,
        value_name = "all|quorum:W|one",
        value_parser = check_write_policy
    )]
    pub write_policy: Option<String>,

    /// With --replicas N > 1: how get reads. all (the default): ask every replica, return the
    /// latest copy and repair the others; quorum:R: the same, but fail unless R replicas
    /// answered; first: ask replicas one at a time, return the first hit (cheapest; may return
    /// an older copy, repairs nothing).
    #[arg(
        long = "read-policy",
        global = true,
        value_name = "all|quorum:R|first",
        value_parser = check_read_policy
    )]
    pub read_policy: Option<String>,

    /// With --replicas N > 1: while a server is marked down, place keys on a ring without it
    /// (twemproxy-style ejection), so their copies go to other servers. Off by default: moving
    /// keys serves stale data when the server returns. A server only counts as marked down
    /// after it failed during this command, so a one-shot command rarely moves anything.
    #[arg(long, global = true)]
    pub failover: bool,

    /// TLS to every server (memcached -Z), verified against the system's trust store unless
    /// --tls-ca is given. Implied by the other --tls-* options.
    #[arg(long, global = true, env = "MULTIPUT_TLS")]
    pub tls: bool,

    /// PEM file of the certificate authorities that sign the servers' certificates.
    #[arg(
        long = "tls-ca",
        global = true,
        env = "MULTIPUT_TLS_CA",
        value_name = "FILE"
    )]
    pub tls_ca: Option<String>,

    /// PEM file of a client certificate, for servers that verify clients (with --tls-key).
    #[arg(
        long = "tls-cert",
        global = true,
        env = "MULTIPUT_TLS_CERT",
        value_name = "FILE"
    )]
    pub tls_cert: Option<String>,

    /// PEM file of the client certificate's private key.
    #[arg(
        long = "tls-key",
        global = true,
        env = "MULTIPUT_TLS_KEY",
        value_name = "FILE"
    )]
    pub tls_key: Option<String>,

    /// The name the servers' certificates must carry (default: each server's host).
    #[arg(
        long = "tls-server-name",
        global = true,
        env = "MULTIPUT_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub tls_server_name: Option<String>,

    /// Only these servers speak TLS (the others plain TCP); default: every server.
    #[arg(
        long = "tls-servers",
        global = true,
        env = "MULTIPUT_TLS_SERVERS",
        value_delimiter = ',',
        value_parser = parse_server,
        value_name = "HOST:PORT,..."
    )]
    pub tls_servers: Vec<ServerSpec>,

    /// User name for memcached's ASCII authentication (-Y), with --password-file or the
    /// MULTIPUT_PASSWORD environment variable.
    #[arg(long, global = true, env = "MULTIPUT_USERNAME", value_name = "NAME")]
    pub username: Option<String>,

    /// A file holding the password (its first line); never pass a password on the command line.
    #[arg(
        long = "password-file",
        global = true,
        env = "MULTIPUT_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<std::path::PathBuf>,

    /// The password itself, from the environment only.
    #[arg(
        long = "password-from-env",
        hide = true,
        global = true,
        env = "MULTIPUT_PASSWORD",
        hide_env_values = true
    )]
    pub password_env: Option<String>,
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
    /// libmemcached's default distribution (php-memcached without OPT_LIBKETAMA_COMPATIBLE,
    /// pylibmc without behaviors): one-at-a-time hash modulo the server count; not
    /// consistent, weights ignored.
    #[value(name = "modula")]
    Modula,
    /// pymemcache's HashClient (Django's PyMemcacheCache): rendezvous hashing with murmur3 over
    /// "host:port-key"; weights ignored.
    #[value(name = "rendezvous", alias = "pymemcache")]
    Rendezvous,
}

impl From<Mode> for RingMode {
    fn from(m: Mode) -> RingMode {
        match m {
            Mode::LibketamaCompatible => RingMode::LibketamaCompatible,
            Mode::KetamaMd5 => RingMode::KetamaMd5,
            Mode::Modula => RingMode::Modula,
            Mode::Rendezvous => RingMode::Rendezvous,
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

/// `--write-policy`, spelled as core's [`WritePolicy::parse`] reads it (checked here, resolved
/// against `--replicas` when the client is built).
fn check_write_policy(s: &str) -> Result<String, String> {
    WritePolicy::parse(s, 1)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--read-policy`, as core's [`ReadPolicy::parse`] reads it.
fn check_read_policy(s: &str) -> Result<String, String> {
    ReadPolicy::parse(s, 1)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
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
columns. The exit status is 0 unless a server failed.

With --replicas N (N > 1) every replica of each key is asked (see --read-policy), the latest \
copy is returned without its envelope, and replicas holding a missing or older copy are \
repaired. A deleted key (a tombstone) is a miss. --cas is refused (each replica has its own \
CAS unique). --verbose prints on stderr, per key: the copy's stamp (ts, its time and counter, \
writer), whether it was enveloped (enveloped=no: a plain value written without --replicas), \
its type, and the replicas that hold the key (primary first; `(failed)` after a replica that \
did not answer). Without --replicas, --verbose prints the server that owns the key.")]
    Get(GetArgs),

    /// Store a value (from the argument, or all of stdin when omitted)
    #[command(
        long_about = "\
Store a value under KEY.

The value is the VALUE argument or, when it is omitted, everything read from standard input, \
byte for byte (a trailing newline is kept: use `printf` rather than `echo` when that matters). \
By default the value is stored unconditionally (set); --add stores only if the key is missing, \
--replace only if it exists, and both fail with `not stored` otherwise. Prints nothing on \
success.

With --replicas N (N > 1) the value is written, inside the envelope, to the key's N replicas \
at once. It succeeds when --write-policy is met: then it prints nothing on stdout, but each \
replica that did not store the copy is named on stderr (`multiput: warning: ...`). When the \
policy is not met the exit status is 1 and the error names each failed replica; the replicas \
that did store keep the new value. --add and --replace are checked and serialized by CAS on \
the key's primary replica (two concurrent --add cannot both succeed; a deleted key counts as \
missing), and fail while the primary is down. --flags is refused (enveloped copies are stored \
with flags 0).",
        allow_negative_numbers = true
    )]
    Set(SetArgs),

    /// Delete keys; prints KEY<TAB>deleted or KEY<TAB>not found (exit 1 if any was missing)
    #[command(long_about = "\
Delete keys. Prints one line per key: KEY<TAB>deleted, KEY<TAB>not found, or KEY<TAB>(error) \
with the error on stderr. The exit status is 1 if any key was missing or failed.

With --replicas N (N > 1) each key's replicas get a tombstone (kept for a day) instead of a \
plain delete, so that a replica that missed the delete cannot bring the value back; reads \
with --replicas then miss. A tombstone is written whether or not the key existed, so the line \
is KEY<TAB>deleted once --write-policy is met, and never `not found`. Replicas that failed \
are named on stderr.")]
    Delete {
        /// The keys to delete.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<OsString>,
    },

    /// Add DELTA (default 1) to a decimal counter and print the new value
    #[command(long_about = "\
Add DELTA (default 1) to the decimal number stored under KEY and print the new value. The \
counter wraps at 2^64. A missing key is an error (exit 1): create it first, e.g. \
`multiput set KEY 0`.

With --replicas N (N > 1) the increment is exact: a CAS loop on the key's primary replica \
reads the latest copy, adds, and writes the result to every replica under a new stamp, so \
concurrent incrementers never lose a step. Fails while the primary is down. DELTA must then \
be below 2^63.")]
    Incr(ArithArgs),

    /// Subtract DELTA (default 1) from a decimal counter (stops at 0) and print the new value
    #[command(long_about = "\
Subtract DELTA (default 1) from the decimal number stored under KEY and print the new value. \
memcached stops at 0 rather than going negative. A missing key is an error (exit 1). With \
--replicas N > 1, exact as for incr.")]
    Decr(ArithArgs),

    /// Give an existing key a new TTL (exit 1 if the key is missing)
    #[command(long_about = "\
Give an existing key a new TTL (exit 1 if the key is missing). With --replicas N > 1 the \
latest copy is rewritten to every replica with the new TTL (serialized on the primary).")]
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

const EXPORTER_ABOUT: &str =
    "Serve Prometheus metrics of every server (GET /metrics), probed with `stats` on each scrape";

const EXPORTER_LONG_ABOUT: &str = "\
Serve a Prometheus endpoint for the fleet: GET /metrics answers with the metrics of every \
server in --servers, and GET / with a short page linking to it.

Each scrape asks every server for `stats`, all at once (one thread per server, over a \
connection kept open between scrapes), each bounded by --timeout-ms for connecting and again \
for the reply, so a scrape takes at most about twice --timeout-ms whatever the servers do; \
keep that below Prometheus' scrape_timeout (10 s by default). Nothing is cached: every scrape \
probes (concurrent scrapes take turns). Per server (label server=\"HOST:PORT\"): \
multiput_memcached_up (1 if it answered, 0 if not), the probe's round trip, items, bytes, the \
memory limit, get hits and misses, gets, sets, connections, evictions, uptime and version \
(counters as counters, gauges as gauges); a server that did not answer has only up=0 and the \
round trip, never old numbers. Plus multiput_exporter_scrape_duration_seconds. The names, and \
PromQL for the hit ratio: docs/exporter.md.

The answer is in the Prometheus text format (0.0.4), or OpenMetrics 1.0 when the request \
accepts application/openmetrics-text (as Prometheus does). A path other than / and /metrics \
gets 404, a method other than GET or HEAD gets 405. The address served is printed on stderr \
when ready (with --listen HOST:0, a free port is picked). SIGINT or SIGTERM stops it (exit \
status 0); it exits 1 if it cannot listen.

--mode, --prefix, --replicas and the policies do not apply (servers are asked one by one); \
--protocol and --timeout-ms do.";

const EXPORTER_AFTER_HELP: &str = "\
Examples:
  multiput exporter --servers 10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211
  MULTIPUT_SERVERS=cache1,cache2 multiput exporter --listen 0.0.0.0:9150 --timeout-ms 500

Prometheus:
  scrape_configs:
    - job_name: memcached
      static_configs:
        - targets: ['127.0.0.1:9150']";

/// `multiput exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to serve on. Port 0 picks a free port (the address is printed on stderr).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9150")]
    pub listen: String,
}

/// `multiput ring` (its `--replicas N` is the global option).
#[derive(Debug, Args)]
pub struct RingArgs {
    /// Keys to place; when none are given they are read from stdin, one per line.
    #[arg(value_name = "KEY")]
    pub keys: Vec<OsString>,
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
    /// Also show each value's CAS unique (uses gets; not with --replicas N > 1).
    #[arg(long)]
    pub cas: bool,
    /// Also print on stderr where the key lives and, with --replicas N > 1, the stamp of the
    /// copy returned and whether it was enveloped.
    #[arg(short, long)]
    pub verbose: bool,
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
    /// Client flags to store with the value (not with --replicas N > 1: enveloped copies are
    /// stored with flags 0).
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
