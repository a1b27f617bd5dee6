'use strict';
// The lock handle of the Node client: release and extend are the core's machines.

/** A held lock. `release()` deletes it only if it is still ours (compare-and-delete). */
class Lock {
  constructor(client, key, name, got) {
    this._client = client;
    this._key = key;
    this._holds = got.holds;
    this._quorum = got.quorum;
    this.name = name;
    this.token = got.token;
    this.held = true;
    this.fence = got.fence;
  }

  /** true: released; false: it had expired (and may belong to someone else: left alone). */
  async release() {
    if (!this.held) return false;
    this.held = false;
    const c = this._client;
    return c._run((j) => c._core.lockRelease(j, this._key, this._holds, this._quorum));
  }

  /** Give the lock a new TTL if it is still ours (false if not). */
  async extend(ttl) {
    if (!this.held) return false;
    const c = this._client;
    try {
      const r = await c._run((j) => c._core.lockExtend(j, this._key, this.token, this._holds, this._quorum, ttl));
      this._holds = r.holds;
      this.held = r.held;
      return r.held;
    } catch (e) {
      this.held = false;
      throw e;
    }
  }
}

module.exports = { Lock };
