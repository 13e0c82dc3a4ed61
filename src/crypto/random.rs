//! Random identifiers: session ids, made from the operating system's
//! random source.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The bytes of a session id: 128 bits.
const ID_BYTES: usize = 16;

/// The length of a session id as text: base64url of [`ID_BYTES`], unpadded.
pub(crate) const ID_LEN: usize = 22;

/// A new random session id, or `None` if the operating system's random
/// source failed (latch then makes no login rather than a guessable one).
pub(crate) fn session_id() -> Option<String> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The 128 bits of a session id of latch's shape, as two words: the key the
/// [registry](crate::registry)'s in-memory set of ended sessions uses.
pub(crate) fn session_key(id: &str) -> Option<[u64; 2]> {
    if !is_session_id(id) {
        return None;
    }
    let mut bytes = [0u8; ID_BYTES];
    URL_SAFE_NO_PAD.decode_slice(id, &mut bytes).ok()?;
    let (high, low) = bytes.split_at(8);
    Some([
        u64::from_be_bytes(high.try_into().ok()?),
        u64::from_be_bytes(low.try_into().ok()?),
    ])
}

/// Whether `id` has the shape of a session id latch makes.
pub(crate) fn is_session_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        // The last character carries 2 bits of padding: only these four.
        && id.ends_with(['A', 'Q', 'g', 'w'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_128_random_bits_in_base64url() {
        let ids: Vec<String> = (0..1000).map(|_| session_id().unwrap()).collect();
        for id in &ids {
            assert!(is_session_id(id), "{id}");
            assert_eq!(URL_SAFE_NO_PAD.decode(id).unwrap().len(), ID_BYTES);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "no two alike");
    }

    #[test]
    fn session_keys_are_the_ids_bits() {
        let id = session_id().unwrap();
        let key = session_key(&id).unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        assert_eq!(key[0].to_be_bytes(), bytes[..8]);
        assert_eq!(key[1].to_be_bytes(), bytes[8..]);
        assert_eq!(session_key("AAAAAAAAAAAAAAAAAAAAAB"), None);
        assert_eq!(session_key("short"), None);
    }

    #[test]
    fn other_shapes_are_not_session_ids() {
        let good = session_id().unwrap();
        for bad in [
            "",
            "short",
            &good[1..],
            &format!("{good}A"),
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAA+A",
            "AAAAAAAAAAAAAAAAAAAAA/",
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAA\u{e9}",
        ] {
            assert!(!is_session_id(bad), "{bad:?}");
        }
        assert!(is_session_id("AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(is_session_id("_-_-_-_-_-_-_-_-_-_-_w"));
    }
}
