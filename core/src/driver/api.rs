//! The call surface both clients share, written once.
//!
//! [`crate::Client`] (async) and [`crate::blocking::Client`] expand the same method list; each
//! supplies `keyed`, `run_each` and `each_server` for its driver. So every call has one
//! definition, one doc comment and one behaviour, whether it is awaited or blocks.

macro_rules! client_api {
    ($($asyncness:ident)?; $($await:tt)*) => {
    /// Get a value; `None` on a miss.
    pub $($asyncness)? fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        let key = key.as_ref();
        self.read_one(key, false, None)$($await)*
    }

    /// Get a value with its CAS unique (for [`Client::cas`]).
    pub $($asyncness)? fn gets(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        let key = key.as_ref();
        self.read_one(key, true, None)$($await)*
    }

    /// Get a value and set a new TTL (`gat`; with `cas`, `gats`).
    pub $($asyncness)? fn gat(
        &self,
        key: impl AsRef<[u8]>,
        ttl: u32,
        cas: bool,
    ) -> Result<Option<Value>, Error> {
        let key = key.as_ref();
        self.read_one(key, cas, Some(ttl))$($await)*
    }

    $($asyncness)? fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        data: &[u8],
        o: StoreOptions,
    ) -> Result<(), Error> {
        self.cluster().check_value(data.len())?;
        let s = self.cluster().route(key)?;
        let r = self.run(s, ops::Store { mode, key, data, flags: o.flags, ttl: o.ttl })$($await)*;
        self.cluster().tally_store(s, &r);
        r
    }

    $($asyncness)? fn read_one(
        &self,
        key: &[u8],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Option<Value>, Error> {
        let s = self.cluster().route(key)?;
        let r = self.run(s, ops::Get { key, cas, touch })$($await)*;
        self.cluster().tally_read(s, &r);
        r
    }

    /// Counters per server and in total: hits, misses, sets, errors, timeouts, down events
    /// (and, for replicated calls, repairs and disagreements).
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.cluster().metrics()
    }

    /// Store unconditionally. `Ok(())` means the server stored it.
    pub $($asyncness)? fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: impl Into<StoreOptions>,
    ) -> Result<(), Error> {
        self.store(StoreMode::Set, key.as_ref(), value.as_ref(), opts.into())$($await)*
    }

    /// Store only if the key is missing; [`Error::NotStored`] if it exists.
    pub $($asyncness)? fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: impl Into<StoreOptions>,
    ) -> Result<(), Error> {
        self.store(StoreMode::Add, key.as_ref(), value.as_ref(), opts.into())$($await)*
    }

    /// Store only if the key exists; [`Error::NotStored`] if it is missing.
    pub $($asyncness)? fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: impl Into<StoreOptions>,
    ) -> Result<(), Error> {
        self.store(StoreMode::Replace, key.as_ref(), value.as_ref(), opts.into())$($await)*
    }

    /// Append to an existing value; [`Error::NotStored`] if the key is missing.
    pub $($asyncness)? fn append(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.store(StoreMode::Append, key.as_ref(), value.as_ref(), StoreOptions::default())$($await)*
    }

    /// Prepend to an existing value; [`Error::NotStored`] if the key is missing.
    pub $($asyncness)? fn prepend(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        self.store(StoreMode::Prepend, key.as_ref(), value.as_ref(), StoreOptions::default())$($await)*
    }

    /// Compare-and-swap: store only if the item's CAS unique is still `cas`.
    /// [`Error::Exists`] if it changed, [`Error::NotFound`] if it is gone.
    pub $($asyncness)? fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        cas: u64,
        opts: impl Into<StoreOptions>,
    ) -> Result<(), Error> {
        self.store(StoreMode::Cas(cas), key.as_ref(), value.as_ref(), opts.into())$($await)*
    }

    /// Delete a key; `true` if it existed.
    pub $($asyncness)? fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        self.keyed(key, ops::Delete { key })$($await)*
    }

    /// Increment a decimal counter; `None` if the key is missing. Wraps at 2^64.
    pub $($asyncness)? fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<Option<u64>, Error> {
        let key = key.as_ref();
        self.keyed(key, ops::Arith { key, incr: true, delta })$($await)*
    }

    /// Decrement a decimal counter; `None` if the key is missing. Stops at 0.
    pub $($asyncness)? fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<Option<u64>, Error> {
        let key = key.as_ref();
        self.keyed(key, ops::Arith { key, incr: false, delta })$($await)*
    }

    /// Set a new TTL; `true` if the key existed.
    pub $($asyncness)? fn touch(&self, key: impl AsRef<[u8]>, ttl: u32) -> Result<bool, Error> {
        let key = key.as_ref();
        self.keyed(key, ops::Touch { key, ttl })$($await)*
    }

    /// Send a raw meta command to the server that owns the key (`mn` goes to the first server).
    /// Fails with [`Error::Unsupported`] on a server without the meta protocol.
    pub $($asyncness)? fn meta(&self, cmd: ops::Meta<'_>) -> Result<MetaReply, Error> {
        let s = match cmd {
            ops::Meta::Get(k, _)
            | ops::Meta::Set(k, _, _)
            | ops::Meta::Delete(k, _)
            | ops::Meta::Arithmetic(k, _) => match k {
                MetaKey::Text(t) => self.cluster().route(t)?,
                MetaKey::Binary(b) => {
                    crate::key::validate_binary(b)?;
                    self.cluster().ring().server_for(b).unwrap_or(0)
                }
            },
            ops::Meta::Noop => 0,
        };
        self.run(s, cmd)$($await)*
    }

    /// Get many keys: one request per server, all servers at once. The result is aligned with
    /// `keys`: a value, a miss (`None`), or the error of the key's server, so one failed server
    /// does not hide the others' answers.
    pub $($asyncness)? fn get_multi<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<Option<Value>, Error>> {
        self.get_multi_inner(keys, false)$($await)*
    }

    /// [`Client::get_multi`] with CAS uniques.
    pub $($asyncness)? fn gets_multi<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<Option<Value>, Error>> {
        self.get_multi_inner(keys, true)$($await)*
    }

    $($asyncness)? fn get_multi_inner<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        cas: bool,
    ) -> Vec<Result<Option<Value>, Error>> {
        let (mut out, groups) = self.cluster().plan(keys.len(), |i| keys[i].as_ref(), |_| Ok(()), None);
        let lists = cluster::gather(&groups, |i| keys[i].as_ref());
        let ops = cluster::zip_ops(&groups, &lists, |keys| ops::GetMulti { keys, cas, ttl: false });
        let rs = self.run_each(ops)$($await)*;
        cluster::merge(&mut out, &groups, cluster::lift(rs));
        for (srv, idx) in &groups {
            idx.iter().for_each(|&i| self.cluster().tally_read(*srv, &out[i]));
        }
        out
    }

    /// Store many items (set), pipelined per server, all servers at once. The result is aligned
    /// with `items`: every item says whether it was stored.
    pub $($asyncness)? fn set_multi<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        items: &[(K, V)],
        opts: impl Into<StoreOptions>,
    ) -> Vec<Result<(), Error>> {
        self.store_multi(StoreMode::Set, items, opts.into())$($await)*
    }

    /// Store many items with one store mode (set, add, replace, append, prepend).
    pub $($asyncness)? fn store_multi<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        mode: StoreMode,
        items: &[(K, V)],
        o: StoreOptions,
    ) -> Vec<Result<(), Error>> {
        self.store_each(mode, items.len(), |i| (items[i].0.as_ref(), items[i].1.as_ref(), o.flags), o.ttl)$($await)*
    }

    /// Set many items, each with its own client flags (`(key, data, flags)`), one pipelined
    /// request per server. Aligned with `items`.
    pub $($asyncness)? fn set_multi_flagged<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        items: &[(K, V, u32)],
        ttl: u32,
    ) -> Vec<Result<(), Error>> {
        self.store_each(StoreMode::Set, items.len(), |i| (items[i].0.as_ref(), items[i].1.as_ref(), items[i].2), ttl)$($await)*
    }

    $($asyncness)? fn store_each<'i>(
        &self,
        mode: StoreMode,
        n: usize,
        item: impl Fn(usize) -> (&'i [u8], &'i [u8], u32),
        ttl: u32,
    ) -> Vec<Result<(), Error>> {
        let cl = &self.cluster();
        let (mut out, groups) = cl.plan(n, |i| item(i).0, |i| cl.check_value(item(i).1.len()), ());
        let lists = cluster::gather(&groups, |i| {
            let (key, data, flags) = item(i);
            ops::Item { key, data, mode, flags, ttl }
        });
        let ops = cluster::zip_ops(&groups, &lists, |items| ops::StoreItems { items });
        let rs = self.run_each(ops)$($await)*;
        cluster::merge(&mut out, &groups, rs);
        for (srv, idx) in &groups {
            idx.iter().for_each(|&i| self.cluster().tally_store(*srv, &out[i]));
        }
        out
    }

    /// Delete many keys, pipelined per server. Aligned with `keys`: `Ok(true)` if it existed.
    pub $($asyncness)? fn delete_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        let (mut out, groups) = self.cluster().plan(keys.len(), |i| keys[i].as_ref(), |_| Ok(()), false);
        let lists = cluster::gather(&groups, |i| keys[i].as_ref());
        let ops = cluster::zip_ops(&groups, &lists, |keys| ops::DeleteMulti { keys });
        let rs = self.run_each(ops)$($await)*;
        cluster::merge(&mut out, &groups, rs);
        out
    }

    /// `flush_all [delay]` on every server; one result per server, in configuration order.
    pub $($asyncness)? fn flush_all(&self, delay: Option<u32>) -> Vec<(String, Result<(), Error>)> {
        self.each_server(|| ops::FlushAll { delay })$($await)*
    }

    /// `cache_memlimit <megabytes>` on every server: change memcached's memory limit at run
    /// time (memcached's `-m`). Each server answers for itself.
    pub $($asyncness)? fn cache_memlimit(&self, megabytes: u32) -> Vec<(String, Result<(), Error>)> {
        self.each_server(|| ops::CacheMemlimit { megabytes })$($await)*
    }

    /// `version` of every server.
    pub $($asyncness)? fn version(&self) -> Vec<(String, Result<String, Error>)> {
        self.each_server(|| ops::Version)$($await)*
    }

    /// `stats [group]` of every server.
    pub $($asyncness)? fn stats(
        &self,
        group: Option<&str>,
    ) -> Vec<(String, Result<Vec<(String, String)>, Error>)> {
        self.each_server(|| ops::Stats { group })$($await)*
    }

    };
}

pub(crate) use client_api;
