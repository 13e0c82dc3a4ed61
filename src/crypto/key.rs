//! Secret keys and the key ring that signs and verifies every latch token.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The fewest bytes a [`SecretKey`] may have: [`SecretKey::MIN_LEN`].
const MIN_KEY_LEN: usize = 32;

/// Why a secret key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is shorter than [`SecretKey::MIN_LEN`] bytes.
    #[error(
        "the secret key is {len} bytes long; latch needs at least {MIN_KEY_LEN}. \
         Make one with `openssl rand -base64 48` (or `SecretKey::generate()`) \
         and keep it out of your source code"
    )]
    TooShort {
        /// The length of the refused key, in bytes.
        len: usize,
    },
    /// The operating system's random number generator failed.
    #[error("could not read random bytes from the operating system: {0}")]
    Random(String),
}

/// A secret key for signing session and remember-me tokens.
///
/// The key is used as-is as an HMAC-SHA256 key, so a Microdot app with the
/// same `secret_key` string signs and verifies the same tokens. It must be at
/// least [`MIN_LEN`](Self::MIN_LEN) bytes long.
///
/// ```
/// use axum_latch::SecretKey;
///
/// let key = SecretKey::new("a key of at least thirty-two bytes, from the environment")?;
/// assert!(SecretKey::new("top-secret!").is_err());
/// # Ok::<(), axum_latch::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SecretKey {
    bytes: Box<[u8]>,
    /// HMAC-SHA256 with this key and nothing hashed yet: the key's padded
    /// blocks are hashed once here, not again for every token.
    mac: Hmac<Sha256>,
}

impl SecretKey {
    /// The fewest bytes a key may have (32): HS256 is only as strong as its
    /// key, and a shorter one can be guessed offline from one cookie.
    pub const MIN_LEN: usize = MIN_KEY_LEN;

    /// Makes a key from bytes (a string works too), refusing keys shorter
    /// than [`MIN_LEN`](Self::MIN_LEN) bytes.
    ///
    /// ```
    /// use axum_latch::SecretKey;
    ///
    /// # std::env::set_var("SECRET_KEY", "x".repeat(48));
    /// let key = SecretKey::new(std::env::var("SECRET_KEY").expect("SECRET_KEY is set"))?;
    /// assert!(SecretKey::new("too short").is_err());
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let bytes = bytes.as_ref();
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: bytes.len() });
        }
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.into(),
            mac: Hmac::new_from_slice(bytes).expect("HMAC takes any key size"),
        }
    }

    /// Makes a random 64-byte key from the operating system's random source.
    ///
    /// Sessions signed with a generated key end when the process does, so
    /// use it for tests and throw-away development servers only.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// // Fine for tests and demos: every restart logs everyone out.
    /// let session = Session::new(SecretKey::generate()?);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The key's bytes.
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// An HMAC-SHA256 with this key, ready for the data.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({} bytes, redacted)", self.bytes.len())
    }
}

/// The keys latch signs with and accepts: one current key and any number of
/// previous keys.
///
/// New tokens are always signed with the current key. Tokens signed with a
/// previous key are still accepted, and are signed again with the current key
/// the next time they are re-issued. Removing a key from the ring ends every
/// session it signed, and every remember-me cookie made under it: stateless
/// ones (signed with it) and revocable ones alike (the store keeps a
/// fingerprint of the user's `auth_hash` made with it, which no longer
/// matches).
///
/// # Rotating keys
///
/// 1. Make a new key: `openssl rand -base64 48`.
/// 2. Deploy with the new key current and the old one previous
///    (`KeyRing::new(new).with_previous(old)`), on every instance. Until
///    all instances run it, some still sign with the old key, which the
///    new ones accept.
/// 3. Wait. Each session in use is re-issued under the new key at its next
///    renewal (at most a minute of activity); its `_auth` fingerprint moves
///    to the new key too. Remember-me cookies (stateless or revocable) are
///    re-issued under the new key at their next use.
/// 4. Deploy without the old key once sessions signed with it no longer
///    matter: after the idle timeout (1 day by default) every active session
///    has moved; remember-me cookies not used since are then refused (their
///    users log in again). Wait for the remember-me lifetime to keep those.
///
/// A leaked key is different: deploy the new key *without* the old one at
/// once. Every session and every remember-me cookie ends, revocable ones
/// included, which is the point, since anyone with the old key could have
/// forged them or their fingerprints.
///
/// ```
/// use axum_latch::{KeyRing, SecretKey};
///
/// let current = SecretKey::new("the new key, at least thirty-two bytes long")?;
/// let previous = SecretKey::new("the old key, at least thirty-two bytes long")?;
/// let ring = KeyRing::new(current).with_previous(previous);
/// assert_eq!(ring.len(), 2);
/// # Ok::<(), axum_latch::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<SecretKey>,
}

impl KeyRing {
    /// A ring with one key, the current one.
    ///
    /// ```
    /// use axum_latch::{KeyRing, SecretKey, Session};
    ///
    /// let ring = KeyRing::new(SecretKey::generate()?);
    /// let session = Session::new(ring);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn new(current: SecretKey) -> Self {
        Self {
            keys: vec![current],
        }
    }

    /// Adds a previous key, accepted for verification only.
    ///
    /// ```
    /// use axum_latch::{KeyRing, SecretKey};
    ///
    /// let new = SecretKey::new("the new key, at least thirty-two bytes long")?;
    /// let old = SecretKey::new("the old key, at least thirty-two bytes long")?;
    /// let ring = KeyRing::new(new).with_previous(old); // old tokens still accepted
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn with_previous(mut self, previous: SecretKey) -> Self {
        self.keys.push(previous);
        self
    }

    /// The key new tokens are signed with.
    ///
    /// ```
    /// use axum_latch::{KeyRing, SecretKey};
    ///
    /// let ring = KeyRing::new(SecretKey::generate()?).with_previous(SecretKey::generate()?);
    /// assert!(std::ptr::eq(ring.current(), &ring.keys()[0]));
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn current(&self) -> &SecretKey {
        &self.keys[0]
    }

    /// Every key, the current one first.
    ///
    /// ```
    /// use axum_latch::{KeyRing, SecretKey};
    ///
    /// let ring = KeyRing::new(SecretKey::generate()?).with_previous(SecretKey::generate()?);
    /// assert_eq!(ring.keys().len(), 2); // current first, then previous
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn keys(&self) -> &[SecretKey] {
        &self.keys
    }

    /// How many keys the ring holds.
    ///
    /// ```
    /// use axum_latch::{KeyRing, SecretKey};
    ///
    /// assert_eq!(KeyRing::new(SecretKey::generate()?).len(), 1);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least its current key.
    ///
    /// ```
    /// use axum_latch::{KeyRing, SecretKey};
    ///
    /// assert!(!KeyRing::new(SecretKey::generate()?).is_empty()); // never: a ring has a current key
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl From<SecretKey> for KeyRing {
    fn from(key: SecretKey) -> Self {
        Self::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_key_is_refused_with_advice() {
        let err = SecretKey::new("top-secret!").unwrap_err();
        assert_eq!(err, KeyError::TooShort { len: 11 });
        let message = err.to_string();
        assert!(message.contains("at least 32"), "{message}");
        assert!(message.contains("openssl rand"), "{message}");
    }

    #[test]
    fn key_of_exactly_the_minimum_length_is_accepted() {
        assert!(SecretKey::new([7u8; MIN_KEY_LEN]).is_ok());
        assert!(SecretKey::new([7u8; MIN_KEY_LEN - 1]).is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = SecretKey::new("a very secret key that nobody may read").unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("secret key that"), "{shown}");
    }

    #[test]
    fn generated_keys_differ() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.as_bytes().len(), 64);
    }

    #[test]
    fn ring_signs_with_the_first_key() {
        let a = SecretKey::new([1u8; 32]).unwrap();
        let b = SecretKey::new([2u8; 32]).unwrap();
        let ring = KeyRing::new(a).with_previous(b);
        assert_eq!(ring.current().as_bytes(), &[1u8; 32]);
        assert_eq!(ring.keys().len(), 2);
    }
}
