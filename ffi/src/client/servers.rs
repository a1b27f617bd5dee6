//! Servers and placement.

use super::*;

/// How many servers the client has.
///
/// # Safety
/// `client` is null (0 is returned) or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_server_count(client: *const MultiputClient) -> usize {
    if client.is_null() {
        return 0;
    }
    unsafe { &*client }.addresses.len()
}

/// `host:port` of server `index` (configuration order), owned by the client; null when out of
/// range.
///
/// # Safety
/// `client` is null or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_server_address(
    client: *const MultiputClient,
    index: usize,
) -> *const c_char {
    if client.is_null() {
        return std::ptr::null();
    }
    unsafe { &*client }
        .addresses
        .get(index)
        .map_or(std::ptr::null(), |a| a.as_ptr())
}

/// The servers holding `key`'s copies, primary first: up to `cap` indexes into `indexes`, the
/// count to `*count` (1 in plain mode: the ring owner; the replica count in replicated mode).
/// Placement ignores the key prefix, as libmemcached does, and takes any non-empty bytes: the
/// key rules are about what can be sent, and libmemcached (PECL `getServerByKey`, the
/// `*ByKey` server keys) places any key.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `indexes` holds `cap` entries; `count`
/// is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_servers_for(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    indexes: *mut usize,
    cap: usize,
    count: *mut usize,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        if indexes.is_null() && cap > 0 {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "indexes is null"));
        }
        if key.is_empty() {
            return Err(fail(&Error::InvalidKey {
                reason: multiput::error::KeyProblem::Empty,
            }));
        }
        let list = c.cache.servers_for(key);
        for (i, s) in list.iter().take(cap).enumerate() {
            // SAFETY: `indexes` holds `cap` entries.
            unsafe { *indexes.add(i) = *s };
        }
        unsafe { write_out(count, list.len()) }
    })
}

/// The replica count of a replicated client, 0 for a plain one.
///
/// # Safety
/// `client` is null or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_replicas(client: *const MultiputClient) -> usize {
    if client.is_null() {
        return 0;
    }
    unsafe { &*client }
        .repl()
        .as_ref()
        .map_or(0, |r| r.policy().replicas)
}
