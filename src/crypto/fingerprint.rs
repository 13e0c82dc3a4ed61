//! Fingerprints of a user's `auth_hash`: what ties sessions and remember
//! tokens to the user's current credentials, so that changing them revokes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::crypto::key::{KeyRing, SecretKey};
use crate::crypto::token::hmac_sha256;

/// How many bytes of the HMAC a fingerprint keeps.
const FINGERPRINT_LEN: usize = 16;

/// Sets these fingerprints apart from any other HMAC made with the same key.
const CONTEXT: &[u8] = b"latch auth_hash fingerprint\0";

/// The fingerprint of `auth_hash` under `key`: a truncated HMAC, so the
/// token (which the browser can read) never shows the hash itself.
pub(crate) fn fingerprint(key: &SecretKey, auth_hash: &[u8]) -> String {
    let encoded = encoded(key, auth_hash);
    String::from_utf8_lossy(&encoded).into_owned()
}

/// The base64url text of a fingerprint, on the stack.
fn encoded(key: &SecretKey, auth_hash: &[u8]) -> [u8; ENCODED_LEN] {
    let mac = hmac_sha256(key, &[CONTEXT, auth_hash]);
    let mut encoded = [0u8; ENCODED_LEN];
    let written = URL_SAFE_NO_PAD
        .encode_slice(&mac[..FINGERPRINT_LEN], &mut encoded)
        .expect("16 bytes take 22 base64 characters");
    debug_assert_eq!(written, ENCODED_LEN);
    encoded
}

/// The length of a fingerprint's text: 16 bytes in unpadded base64.
const ENCODED_LEN: usize = 22;

/// Which key of the ring makes `claimed` the fingerprint of `auth_hash`
/// (`0` is the current key; a token from before a key rotation carries an
/// old key's), or `None` if no key does. Compared in constant time.
pub(crate) fn matching_key(keys: &KeyRing, auth_hash: &[u8], claimed: &str) -> Option<usize> {
    keys.keys()
        .iter()
        .position(|key| encoded(key, auth_hash).ct_eq(claimed.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_stable_and_hides_the_hash() {
        let key = SecretKey::new([3u8; 32]).unwrap();
        let a = fingerprint(&key, b"$argon2id$v=19$secret");
        assert_eq!(a, fingerprint(&key, b"$argon2id$v=19$secret"));
        assert_eq!(a.len(), 22);
        assert!(!a.contains("argon"));
        assert_ne!(a, fingerprint(&key, b"$argon2id$v=19$other"));
    }

    #[test]
    fn any_key_of_the_ring_matches() {
        let old = SecretKey::new([1u8; 32]).unwrap();
        let new = SecretKey::new([2u8; 32]).unwrap();
        let claimed = fingerprint(&old, b"h");
        assert_eq!(
            matching_key(
                &KeyRing::new(new.clone()).with_previous(old),
                b"h",
                &claimed
            ),
            Some(1)
        );
        assert_eq!(matching_key(&KeyRing::new(new), b"h", &claimed), None);
    }

    #[test]
    fn different_hash_does_not_match() {
        let key = SecretKey::new([1u8; 32]).unwrap();
        let ring = KeyRing::new(key.clone());
        assert_eq!(
            matching_key(&ring, b"new password", &fingerprint(&key, b"old password")),
            None
        );
        assert_eq!(matching_key(&ring, b"h", ""), None);
        assert_eq!(matching_key(&ring, b"h", &fingerprint(&key, b"h")), Some(0));
    }
}
