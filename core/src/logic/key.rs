//! Key rules, checked before anything is sent.
//!
//! memcached's classic (text) protocol takes keys of 1 to 250 bytes with no whitespace and no
//! control characters; a CR or LF in a key would let a caller inject commands, so such a key can
//! never reach the wire. Bytes >= 0x80 (UTF-8) are allowed, as libmemcached and pylibmc allow
//! them. Keys that must hold arbitrary bytes go through the meta protocol's base64 mode
//! ([`encode_binary_key`]), which memcached decodes back to the raw bytes it stores.

use crate::error::{Error, KeyProblem};
use base64::Engine;

/// The longest key memcached accepts, in bytes.
pub const MAX_KEY_LEN: usize = 250;

/// Check a key against the text-protocol rules.
///
/// ```
/// assert!(multiput::key::validate(b"user:42").is_ok());
/// assert!(multiput::key::validate(b"two words").is_err());
/// ```
pub fn validate(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidKey {
            reason: KeyProblem::Empty,
        });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey {
            reason: KeyProblem::TooLong(key.len()),
        });
    }
    if let Some(at) = key.iter().position(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::InvalidKey {
            reason: KeyProblem::ForbiddenByte(at),
        });
    }
    Ok(())
}

/// The longest binary key: memcached limits the key token on the wire to 250 bytes, which is
/// the base64 form, so 186 raw bytes (248 encoded).
pub const MAX_BINARY_KEY_LEN: usize = MAX_KEY_LEN / 4 * 3;

/// Check a binary key (any bytes, sent base64-encoded through the meta protocol): 1 to
/// [`MAX_BINARY_KEY_LEN`] raw bytes.
pub fn validate_binary(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidKey {
            reason: KeyProblem::Empty,
        });
    }
    // memcached checks the encoded token against its 250-byte limit before decoding it.
    if key.len() > MAX_BINARY_KEY_LEN {
        return Err(Error::InvalidKey {
            reason: KeyProblem::BinaryTooLong(key.len()),
        });
    }
    Ok(())
}

/// The base64 form of a binary key, as the meta protocol's `b` flag expects it.
pub fn encode_binary_key(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Decode a base64 key echoed by the server (meta `k` flag with `b`).
pub fn decode_binary_key(encoded: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_and_utf8() {
        validate(b"a").unwrap();
        validate("clé:日本:🙂".as_bytes()).unwrap();
        validate(&[b'x'; 250]).unwrap();
    }

    #[test]
    fn refuses_bad_keys() {
        for bad in [
            &b""[..],
            b"a b",
            b"a\r\nset x 0 0 1",
            b"tab\there",
            b"nul\0",
            b"del\x7f",
        ] {
            assert!(
                matches!(validate(bad), Err(Error::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate(&[b'x'; 251]),
            Err(Error::InvalidKey {
                reason: KeyProblem::TooLong(251)
            })
        ));
    }

    #[test]
    fn binary_keys_round_trip() {
        let k = [0u8, b'\r', b'\n', b' ', 0xff];
        validate_binary(&k).unwrap();
        assert_eq!(
            decode_binary_key(encode_binary_key(&k).as_bytes()).unwrap(),
            k
        );
        assert!(validate_binary(&[]).is_err());
        validate_binary(&[b' '; MAX_BINARY_KEY_LEN]).unwrap();
        assert!(matches!(
            validate_binary(&[b' '; MAX_BINARY_KEY_LEN + 1]),
            Err(Error::InvalidKey {
                reason: KeyProblem::BinaryTooLong(187)
            })
        ));
        // The longest binary key's base64 form fits memcached's 250-byte key token.
        assert!(encode_binary_key(&[0u8; MAX_BINARY_KEY_LEN]).len() <= MAX_KEY_LEN);
        assert!(encode_binary_key(&[0u8; MAX_BINARY_KEY_LEN + 1]).len() > MAX_KEY_LEN);
    }
}
