// Type declarations of the `multiput` Node package.

/// <reference types="node" />

/**
 * A value you can store.
 *
 * | JS | replicated (envelope type) | plain, convention `multiput` (default) | plain, `pylibmc` / `pecl` flags |
 * | --- | --- | --- | --- |
 * | `Buffer` / `Uint8Array` | bytes | bytes (flags 0) | 0 / 0 |
 * | `string` | text (UTF-8) | text | 0 / 0 (UTF-8 bytes) |
 * | `number`, safe integer | int | int | 2 / 1 (decimal) |
 * | `number`, otherwise | float | float | 1 (pickle) / 2 |
 * | `bigint` (i64 range) | int | int | 2 / 1 |
 * | `boolean` | bool | bool | 1 (pickle) / 3 |
 * | object / array | serialized, JSON | JSON | refused / 6 (JSON) |
 *
 * `null` and `undefined` are refused (a stored null would read as a miss).
 */
export type StorableValue = Buffer | Uint8Array | string | number | bigint | boolean | object;

/**
 * A value read back. Values written by any multiput binding (replicated, or plain with the
 * default `multiput` convention) come back as the type they were written with. Values written
 * by other clients: flags 0 read as a `Buffer`, other flags by pylibmc's numbers (`pecl`:
 * PECL's). A value whose flags and bytes disagree, or a Python pickle or PHP `serialize()`
 * output, is an `UndecodableError`. Integers beyond 2^53 come back as `bigint`.
 */
export type Value = Buffer | string | number | bigint | boolean | object;

/** Write policy: every live replica (`all`, default), a majority (`quorum`), at least W (`quorum:W`, W, `{quorum: W}`), or `one`. */
export type WritePolicy = 'all' | 'one' | 'quorum' | `quorum:${number}` | number | { quorum: number };
/** Read policy: ask every replica (`all`, default), the same but need a majority / R answers, or the first hit in preference order (`first`, `first_hit`). */
export type ReadPolicy = 'all' | 'first' | 'first_hit' | 'quorum' | `quorum:${number}` | number | { quorum: number };

/** A server: `"host"`, `"host:port"`, `"host:port:weight"`, `"[v6]:port:weight"` or an object. */
export type ServerSpec = string | { host: string; port?: number; weight?: number };

export interface ClientOptions {
  /** The servers, if not given as the first argument. */
  servers?: ServerSpec[];
  /**
   * `plain` (the default when `replicas` ≤ 1): values are stored as plain memcached items,
   * readable by every other client. `replicated` (the default when `replicas` > 1): values go
   * inside multiput's envelope (timestamp, writer, type) to `replicas` servers; reads take the
   * later copy and repair the others; deletes write tombstones. `replicated` with
   * `replicas: 1` writes the envelope to one server (the Python binding's `envelope=True`).
   */
  mode?: 'plain' | 'replicated';
  /** Copies per key (default 1; `mode: 'replicated'` alone means 2). More than 1 turns replicated mode on. */
  replicas?: number;
  /** When a replicated write succeeds. Default `all`. */
  writePolicy?: WritePolicy;
  /** How a replicated read answers. Default `all`. */
  readPolicy?: ReadPolicy;
  /** Lifetime of delete tombstones, seconds (default 86400). */
  tombstoneTtl?: number;
  /** Write winners back to stale or missing replicas after reads (default true). */
  readRepair?: boolean;
  /** Place copies on a ring without the servers marked down (default false: keys never move). */
  failover?: boolean;
  /** Per-request timeout in ms (default 1000). A timeout fails the connection and marks the server. */
  timeout?: number;
  /** Connect timeout in ms (default 1000). */
  connectTimeout?: number;
  /** Failures in a row that mark a server down (default 1; a refused connection always does). */
  failureLimit?: number;
  /** How long a down server fails fast before one call probes it, ms (default 1000). */
  retryInterval?: number;
  /** Prefix sent on the wire before every key, never hashed (libmemcached OPT_PREFIX_KEY). */
  keyPrefix?: string | Uint8Array;
  /**
   * Also accept keys with spaces and control bytes (up to 186 bytes) and send them base64-encoded
   * over the meta protocol; memcached stores the raw bytes, the item PECL memcached writes with
   * OPT_BINARY_PROTOCOL. Default false: such keys are refused with InvalidKeyError before any I/O.
   */
  binaryKeys?: boolean;
  /**
   * Placement: `libketama_compatible` (default; php-memcached, pylibmc ketama_weighted), `ketama_md5`,
   * or `modula` (libmemcached's default distribution: php-memcached and pylibmc without options).
   */
  ringMode?: 'libketama_compatible' | 'ketama_md5' | 'modula';
  /** `auto` (default: meta protocol when the server speaks it), `text` or `meta`. */
  protocol?: 'auto' | 'text' | 'meta';
  /**
   * Flags of plain values: `multiput` (default: every multiput binding reads them with their
   * type), `pylibmc` (alias `python`: as pylibmc/pymemcache write them) or `pecl` (alias `php`:
   * as PECL memcached writes them), for keys that apps on those clients still read.
   */
  convention?: 'multiput' | 'pylibmc' | 'pecl' | 'python' | 'php';
  /** Largest value in bytes (default 1 MiB, memcached's -I). */
  maxValueSize?: number;
}

/** What a write did: replicas (addresses) that stored it, and those that did not, with why. */
export interface WriteReport {
  stored: string[];
  failed: { server: string; error: MultiputError }[];
}

export interface StoreOptions {
  /** Seconds (0 = no expiry; above 30 days memcached reads an absolute unix time). */
  ttl?: number;
}

export interface CasOptions extends StoreOptions {
  /** Give up after this many reads (default 32). */
  maxAttempts?: number;
  /** Give up after this many ms (default 2000). */
  deadline?: number;
  /** First backoff in ms, doubling with full jitter (default 1). */
  baseBackoff?: number;
  /** Longest backoff in ms (default 50). */
  maxBackoff?: number;
}

export interface CasResult {
  outcome: 'stored' | 'unchanged' | 'deleted';
  attempts: number;
  /** Replicated mode: where the new value was written. */
  report?: WriteReport;
}

export interface LockOptions {
  /** Seconds the lock lives if never released (default 30, at least 1). */
  ttl?: number;
  /** How long to keep trying, ms (default 5000; 0 tries once). */
  wait?: number;
  /** Also take a fencing token (a counter larger than every earlier holder's). */
  fencing?: boolean;
  /** Take the lock on a majority of the name's first `quorum` replicas instead of its one owner, so losing one server does not drop it. */
  quorum?: number;
  baseBackoff?: number;
  maxBackoff?: number;
}

export interface GetOrSetOptions extends StoreOptions {
  /** How long a process that lost the fill lock waits for the filler's value, ms (default 2000). */
  wait?: number;
  /** First pause between its polls, ms (default 5). */
  poll?: number;
  /** Lifetime of the fill lock, seconds (default 10). */
  fillLockTtl?: number;
  /** ± fraction of jitter on the stored TTL (default 0.1). */
  ttlJitter?: number;
}

/** Return it from a `casUpdate` function to delete the key. */
export declare const DELETE: unique symbol;

export declare class Lock {
  readonly name: string | Uint8Array;
  /** This holder's unique owner token (what is stored under the name). */
  readonly token: string;
  /** The fencing token, when asked for. */
  fence: number | bigint | undefined;
  /** True until `release` (or a failed `extend`) says it is no longer ours. */
  held: boolean;
  /** Compare-and-delete: true released; false it had expired (and was left alone). */
  release(): Promise<boolean>;
  /** New TTL if still ours (false if not). */
  extend(ttl: number): Promise<boolean>;
}

export type Key = string | Uint8Array;

export declare class Client {
  /** `servers`: an array, or `"host:port,host:port"` (`;` also separates). */
  constructor(servers: ServerSpec[] | string, options?: ClientOptions);
  constructor(options: ClientOptions & { servers: ServerSpec[] });
  readonly mode: 'plain' | 'replicated';
  readonly servers: string[];
  readonly writerId: bigint;
  /** The replication policies in force (`null` for a plain client). */
  readonly policy: { readPolicy: string; writePolicy: string } | null;
  /**
   * This client with other read and/or write policies (replicated clients): it shares the
   * connections, server health, clock and writer id; replica count and placement are unchanged.
   */
  withPolicy(policy: { readPolicy?: ReadPolicy; writePolicy?: WritePolicy }): Client;

  /** The value, or `null` on a miss (replicated: the latest copy; stale replicas are repaired). */
  get(key: Key): Promise<Value | null>;
  /** The value and its CAS unique (replicated: its version token, which changes with every write), or null. */
  gets(key: Key): Promise<{ value: Value; cas: bigint } | null>;
  /** Store; rejects when not stored (replicated: when the write policy was not met). */
  set(key: Key, value: StorableValue, options?: StoreOptions | number): Promise<WriteReport>;
  /** Store only if missing (NotStoredError otherwise). Replicated: serialized by CAS on the key's primary replica, so two adders cannot both win. */
  add(key: Key, value: StorableValue, options?: StoreOptions | number): Promise<true>;
  /** Store only if present (NotStoredError otherwise); replicated as `add`. */
  replace(key: Key, value: StorableValue, options?: StoreOptions | number): Promise<true>;
  append(key: Key, value: Buffer | Uint8Array | string): Promise<true>;
  prepend(key: Key, value: Buffer | Uint8Array | string): Promise<true>;
  /** Store only if the CAS unique (replicated: version token) still matches (ExistsError / NotFoundError). */
  cas(key: Key, value: StorableValue, cas: bigint | number, options?: StoreOptions | number): Promise<true>;
  /** Plain: true when the key existed. Replicated: writes tombstones; true when the policy was met. */
  delete(key: Key): Promise<boolean>;
  /** The new value, or null when missing (with `initial`: created at `initial`, stored with `ttl`, and that returned). Replicated: exact, serialized by CAS on the primary. */
  incr(key: Key, delta?: number | bigint, initial?: number | bigint, ttl?: number): Promise<number | bigint | null>;
  /** As incr, subtracting (stops at 0); a missing counter is created at `initial` when given. */
  decr(key: Key, delta?: number | bigint, initial?: number | bigint, ttl?: number): Promise<number | bigint | null>;
  /** A new TTL; true when the key existed (replicated: the live value rewritten on every replica). */
  touch(key: Key, ttl: number): Promise<boolean>;

  /** Hits only. Rejects if some keys failed: `error.failures` (Map key → error), `error.partial` (the hits). */
  getMulti<K extends Key>(keys: Iterable<K>): Promise<Map<K, Value>>;
  /** Rejects if any item failed: `error.failures` (Map key → error). */
  setMulti(items: Map<Key, StorableValue> | Record<string, StorableValue> | [Key, StorableValue][], options?: StoreOptions | number): Promise<void>;
  deleteMulti<K extends Key>(keys: Iterable<K>): Promise<Map<K, boolean>>;

  /** Read-modify-write without lost updates. `fn` returns the new value, `undefined` (keep) or `DELETE`. */
  casUpdate(key: Key, fn: (current: Value | null) => StorableValue | undefined | typeof DELETE | Promise<StorableValue | undefined | typeof DELETE>, options?: CasOptions): Promise<CasResult>;
  /** An `add` lock on the name's ring owner only (or a majority of `quorum` replicas); released only by its owner. */
  lock(name: Key, options?: LockOptions): Promise<Lock>;
  /** The value, loaded once (per process, and across processes with a fill lock) on a miss. */
  getOrSet<T extends StorableValue>(key: Key, loader: () => T | Promise<T>, options?: GetOrSetOptions): Promise<Value | T>;

  /** Where a key's copies live (addresses, primary first). */
  replicasOf(key: Key): string[];
  stats(group?: string): Promise<Map<string, Record<string, string> | MultiputError>>;
  version(): Promise<Map<string, string | MultiputError>>;
  flushAll(delay?: number): Promise<void>;
  /** Close every connection; pending calls fail with ConnectionClosedError. */
  close(): void;
}

export type ErrorKind =
  | 'InvalidKey' | 'ValueTooLarge' | 'NotStored' | 'Exists' | 'NotFound' | 'Server' | 'Client'
  | 'Timeout' | 'ConnectionRefused' | 'ConnectionClosed' | 'ServerDown' | 'Protocol'
  | 'Unsupported' | 'Replication' | 'CasRetriesExhausted' | 'LockNotAcquired' | 'Loader' | 'Config'
  | 'Undecodable'
  | 'Auth'
  | 'Tls';

/** Every error the client raises. `kind` is the core's stable error kind. */
export declare class MultiputError extends Error {
  kind: ErrorKind | 'Error';
  server?: string;
  detail?: string;
  /** Multi-key calls: key → error. Replication errors: `[{server, error}]`. */
  failures?: Map<Key, MultiputError> | { server: string; error: MultiputError }[];
  /** getMulti/deleteMulti: the results that did come back. */
  partial?: Map<Key, unknown>;
  [field: string]: unknown;
}
export declare class InvalidKeyError extends MultiputError {}
export declare class ValueTooLargeError extends MultiputError { size: number; max: number }
export declare class NotStoredError extends MultiputError {}
export declare class ExistsError extends MultiputError {}
export declare class NotFoundError extends MultiputError {}
export declare class ServerError extends MultiputError {}
export declare class ClientError extends MultiputError {}
export declare class TimeoutError extends MultiputError { phase: 'connect' | 'write' | 'read'; after: number }
export declare class ConnectionRefusedError extends MultiputError {}
export declare class ConnectionClosedError extends MultiputError {}
export declare class ServerDownError extends MultiputError { retryIn: number }
export declare class ProtocolError extends MultiputError {}
export declare class UnsupportedError extends MultiputError {}
export declare class ReplicationError extends MultiputError { op: string; acked: number; required: number }
export declare class CasRetriesExhaustedError extends MultiputError { key: string; attempts: number }
export declare class LockNotAcquiredError extends MultiputError { name: string; attempts: number; waited: number }
export declare class LoaderError extends MultiputError {}
export declare class ConfigError extends MultiputError {}
/** A stored value that cannot be read here (flags of another client's convention, a pickle); the message names the likely writer. */
export declare class UndecodableError extends MultiputError { flags: number }
/** memcached's ASCII authentication (-Y) refused the credentials (or none were given). */
export declare class AuthError extends MultiputError {}
/** TLS could not be set up; `problem` says what went wrong. */
export declare class TlsError extends MultiputError {
  problem: 'untrusted_certificate' | 'hostname_mismatch' | 'expired' | 'client_certificate_rejected' | 'server_not_tls' | 'server_speaks_tls' | 'handshake';
}

/** Turn an error object made by the WASM core into its MultiputError subclass. */
export declare function toError(e: unknown): unknown;

/** The WebAssembly logic layer itself (wasm-bindgen exports; see pkg/multiput_wasm.d.ts). */
export declare const core: typeof import('./pkg/multiput_wasm');
