// ESM entry: the same objects as the CommonJS entry (one instance of the WebAssembly module).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const m = require('./index.js');

export const {
  Client,
  Lock,
  DELETE,
  core,
  toError,
  MultiputError,
  InvalidKeyError,
  ValueTooLargeError,
  NotStoredError,
  ExistsError,
  NotFoundError,
  ServerError,
  ClientError,
  TimeoutError,
  ConnectionRefusedError,
  ConnectionClosedError,
  ServerDownError,
  ProtocolError,
  UnsupportedError,
  ReplicationError,
  CasRetriesExhaustedError,
  LockNotAcquiredError,
  LoaderError,
  ConfigError,
  UndecodableError,
  AuthError,
  TlsError,
} = m;
export default m;
