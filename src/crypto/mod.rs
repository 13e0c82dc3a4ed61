//! Keys, the HS256 token codec and fingerprints: the cryptography every
//! latch cookie rests on.

pub(crate) mod fingerprint;
pub(crate) mod key;
pub(crate) mod random;
pub(crate) mod token;

pub use key::{KeyError, KeyRing, SecretKey};
