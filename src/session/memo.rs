//! A per-thread memo of session cookies already verified, so that a
//! browser's next requests with the same cookie skip the HMAC and the JSON.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::session::verified::VerifiedSession;

/// How many cookies each thread remembers. When full, the memo starts over:
/// a miss costs only the verification the memo saves.
pub(crate) const CAPACITY: usize = 1024;

/// The last bytes of a cookie (its signature, for a token), by which the
/// memo finds it: hashing a few bytes costs less than hashing the cookie.
type Tail = [u8; TAIL_LEN];
const TAIL_LEN: usize = 43;

/// A memoised cookie: its whole text (compared on every hit), the id of the
/// session configuration that verified it, and the result.
type Memo = HashMap<Tail, (Box<str>, u64, Arc<VerifiedSession>)>;

/// The key of a cookie in the memo, or `None` if it is too short to be a token.
fn tail(token: &str) -> Option<Tail> {
    let bytes = token.as_bytes();
    bytes
        .get(bytes.len().checked_sub(TAIL_LEN)?..)?
        .try_into()
        .ok()
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(HashMap::new());
}

/// A new id for a session configuration: a memo entry is used only by the
/// configuration (keys, timeouts) that made it.
pub(crate) fn next_config_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What `config` verified `token` as, if this thread has seen it. Only the
/// signature and the JSON are memoised: expiry is checked again each time.
pub(crate) fn get(config: u64, token: &str) -> Option<Arc<VerifiedSession>> {
    let tail = tail(token)?;
    MEMO.with_borrow(|memo| match memo.get(&tail) {
        Some((text, id, verified)) if *id == config && **text == *token => Some(verified.clone()),
        _ => None,
    })
}

/// Remembers that `config` verified `token` as `verified`.
pub(crate) fn put(config: u64, token: &str, verified: Arc<VerifiedSession>) {
    let Some(tail) = tail(token) else {
        return;
    };
    MEMO.with_borrow_mut(|memo| {
        if memo.len() >= CAPACITY {
            memo.clear();
        }
        memo.insert(tail, (token.into(), config, verified));
    });
}

#[cfg(test)]
pub(crate) fn len() -> usize {
    MEMO.with_borrow(HashMap::len)
}
