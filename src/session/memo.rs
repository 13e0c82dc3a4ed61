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

/// The last bytes of a cookie or `Cookie` header (the token's signature,
/// when the session cookie comes last), by which the memo finds it:
/// hashing a few bytes costs less than hashing the whole text.
type Tail = [u8; TAIL_LEN];
const TAIL_LEN: usize = 43;

/// A memoised text: the whole of it (compared on every hit), the id of the
/// session configuration that verified it, and the result.
type Memo = HashMap<Tail, (Box<[u8]>, u64, Arc<VerifiedSession>)>;

/// The longest text the memo keeps: a `Cookie` header longer than this is
/// read afresh each time (its session token may still be memoised alone).
pub(crate) const MAX_TEXT: usize = 4096;

/// The key of a text in the memo, or `None` if it is too short to end
/// with a token.
fn tail(bytes: &[u8]) -> Option<Tail> {
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

/// What `config` verified `text` as, if this thread has seen it: `text`
/// is a session token, or a whole `Cookie` header whose one session cookie
/// was that token. Only the signature and the JSON are memoised: expiry is
/// checked again each time.
pub(crate) fn get(config: u64, text: &[u8]) -> Option<Arc<VerifiedSession>> {
    let tail = tail(text)?;
    MEMO.with_borrow(|memo| match memo.get(&tail) {
        Some((kept, id, verified)) if *id == config && **kept == *text => Some(verified.clone()),
        _ => None,
    })
}

/// Remembers that `config` verified `text` as `verified`.
pub(crate) fn put(config: u64, text: &[u8], verified: Arc<VerifiedSession>) {
    if text.len() > MAX_TEXT {
        return;
    }
    let Some(tail) = tail(text) else {
        return;
    };
    MEMO.with_borrow_mut(|memo| {
        if memo.len() >= CAPACITY {
            memo.clear();
        }
        memo.insert(tail, (text.into(), config, verified));
    });
}

#[cfg(test)]
pub(crate) fn len() -> usize {
    MEMO.with_borrow(HashMap::len)
}
