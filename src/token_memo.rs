//! A per-thread memo of session cookies already verified, so that a
//! browser's next requests with the same cookie skip the HMAC and the JSON.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::session::VerifiedSession;

/// How many cookies each thread remembers. When full, the memo starts over:
/// a miss costs only the verification the memo saves.
pub(crate) const CAPACITY: usize = 1024;

/// Cookie text → (the id of the session configuration that verified it, the result).
type Memo = HashMap<Box<str>, (u64, Arc<VerifiedSession>)>;

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
    MEMO.with_borrow(|memo| match memo.get(token) {
        Some((id, verified)) if *id == config => Some(verified.clone()),
        _ => None,
    })
}

/// Remembers that `config` verified `token` as `verified`.
pub(crate) fn put(config: u64, token: &str, verified: Arc<VerifiedSession>) {
    MEMO.with_borrow_mut(|memo| {
        if memo.len() >= CAPACITY {
            memo.clear();
        }
        memo.insert(token.into(), (config, verified));
    });
}

#[cfg(test)]
pub(crate) fn len() -> usize {
    MEMO.with_borrow(HashMap::len)
}
