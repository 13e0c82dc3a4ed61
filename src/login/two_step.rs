//! Two-step login: a password checked, a second factor pending. The
//! pending state as the session keeps it, its settings, and the ledger of
//! wrong codes and finished pending logins that the server keeps.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::throttle::Throttle;

/// How a two-step login behaves: where its second step is, how long a
/// pending login lasts, and how many wrong codes it allows. Give it to
/// [`Login::two_step`](crate::Login::two_step); the defaults hold without.
///
/// ```
/// use axum_latch::throttle::Throttle;
/// use axum_latch::two_step::TwoStep;
/// use std::time::Duration;
///
/// let two_step = TwoStep::new()
///     .url("/login/code")?                     // default /login/two-step
///     .expires_after(Duration::from_secs(300)) // the default: 5 minutes
///     .max_attempts(5)                         // the default
///     .throttle(Throttle::in_memory());        // wrong codes count under the user
/// # Ok::<(), axum_latch::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TwoStep {
    pub(crate) url: String,
    pub(crate) expires_after: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) throttle: Option<Throttle>,
}

impl Default for TwoStep {
    fn default() -> Self {
        Self {
            url: "/login/two-step".to_owned(),
            expires_after: Duration::from_secs(5 * 60),
            max_attempts: 5,
            throttle: Some(Throttle::in_memory()),
        }
    }
}

impl TwoStep {
    /// The defaults: the second step at `/login/two-step`, pending logins
    /// that last 5 minutes and allow 5 wrong codes, and codes counted under
    /// the user in a throttle of this instance's memory (see
    /// [`throttle`](Self::throttle): give it the app's shared one when the
    /// app runs on several instances).
    ///
    /// ```
    /// let two_step = axum_latch::two_step::TwoStep::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The page of the second step, where
    /// [`Auth::begin_two_step`](crate::Auth::begin_two_step) sends the
    /// browser (with `next`). A path on this site.
    ///
    /// ```
    /// use axum_latch::two_step::TwoStep;
    ///
    /// assert!(TwoStep::new().url("/login/code").is_ok());
    /// assert!(TwoStep::new().url("https://elsewhere.example/").is_err());
    /// ```
    pub fn url(mut self, url: &str) -> Result<Self, crate::ConfigError> {
        if !crate::next::is_safe_next(url) {
            return Err(crate::ConfigError::LocalUrl(url.to_owned()));
        }
        self.url = url.to_owned();
        Ok(self)
    }

    /// How long a pending login lasts after the password (default 5
    /// minutes, at most a day): past it, the browser goes back to the login
    /// page.
    ///
    /// ```
    /// use std::time::Duration;
    /// let two_step = axum_latch::two_step::TwoStep::new().expires_after(Duration::from_secs(120));
    /// ```
    pub fn expires_after(mut self, duration: Duration) -> Self {
        self.expires_after = duration.min(MAX_PENDING);
        self
    }

    /// How many wrong codes a pending login allows (default 5, at least
    /// 1); the last one discards it, and the user starts again from the
    /// password.
    ///
    /// ```
    /// let two_step = axum_latch::two_step::TwoStep::new().max_attempts(3);
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Counts every code attempt under the user in `throttle` too, so
    /// that starting over from the password, or on another instance, does
    /// not give an attacker new tries: past the throttle's limit (its
    /// per-account limit), codes are refused for a while whatever the
    /// pending login. The codes have a count of their own, apart from the
    /// account's passwords: the right password (which resets the
    /// password count) does not reset it; only a right code does. The
    /// throttle of the password form does, on Redis for several instances.
    ///
    /// ```
    /// use axum_latch::throttle::Throttle;
    /// let throttle = Throttle::in_memory();
    /// let two_step = axum_latch::two_step::TwoStep::new().throttle(throttle.clone());
    /// ```
    pub fn throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = Some(throttle);
        self
    }
}

/// The longest a pending login may last: the time to fetch a phone.
const MAX_PENDING: Duration = Duration::from_secs(24 * 60 * 60);

/// A pending login as the session keeps it (claim `_pending`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Pending {
    /// The user's id (JSON).
    #[serde(rename = "u")]
    pub user_id: Value,
    /// The fingerprint of the user's `auth_hash` when the password was
    /// checked: a password changed meanwhile ends the pending login.
    #[serde(rename = "a")]
    pub fingerprint: String,
    /// When the password was checked (seconds since the Unix epoch).
    #[serde(rename = "t")]
    pub started_at: u64,
    /// The remember-me days chosen on the password form, if any.
    #[serde(rename = "d")]
    pub remember_days: Option<u32>,
    /// The pending login's own random id (of a session id's shape).
    #[serde(rename = "id")]
    pub id: String,
}

impl Pending {
    /// The pending login in a session's claim, if it has latch's shape.
    pub fn from_claim(claim: &Value) -> Option<Self> {
        let pending: Self = serde_json::from_value(claim.clone()).ok()?;
        crate::crypto::random::is_session_id(&pending.id).then_some(pending)
    }

    /// When it ends, in seconds since the Unix epoch.
    pub fn expires_at(&self, settings: &TwoStep) -> u64 {
        self.started_at
            .saturating_add(settings.expires_after.as_secs())
    }
}

/// The most pending logins one instance keeps count of; past it, the
/// expired and then the open or discarded ones are forgotten (the throttle
/// still counts their codes), never a completed one that has not expired.
#[cfg(not(test))]
const LEDGER_CAPACITY: usize = 100_000;
/// Smaller in unit tests, which fill it.
#[cfg(test)]
const LEDGER_CAPACITY: usize = 1_000;

/// What the server knows of pending logins, by id: wrong codes so far, and
/// whether it has been completed (or discarded). The session's copy of the
/// pending login could be replayed from an older cookie, so these counts
/// live here, in this instance's memory.
#[derive(Default)]
pub(crate) struct Ledger {
    entries: Mutex<HashMap<String, LedgerEntry>>,
}

#[derive(Clone, Copy)]
struct LedgerEntry {
    wrong: u32,
    finished: Finished,
    /// When the entry may go (seconds since the Unix epoch).
    until: u64,
}

/// Whether a pending login is finished, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finished {
    No,
    /// Out of tries, logged out, or replaced: an older copy of the cookie
    /// could only try codes again, which the throttle counts.
    Discarded,
    /// Completed into a login: forgetting it would let a copy complete a
    /// second login.
    Completed,
}

/// What [`Ledger::reserve`] says of a code about to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// The code may be checked; if it is wrong, this many tries are left.
    Left(u32),
    /// No code may be checked: the pending login is finished (completed,
    /// out of tries), or this instance cannot keep count of it.
    Refused,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LedgerEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many wrong codes the pending login `id` has had, or `None` if
    /// it is finished (completed or discarded).
    pub fn wrong_so_far(&self, id: &str) -> Option<u32> {
        match self.lock().get(id) {
            Some(entry) if entry.finished != Finished::No => None,
            Some(entry) => Some(entry.wrong),
            None => Some(0),
        }
    }

    /// Counts a code as wrong *before* it is checked, in one step with the
    /// check of the count: however many arrive at once, or are cut off
    /// during the check, no more than `max` are checked. A right code is
    /// then [`finish`](Self::finish)ed; a wrong one that used the last try
    /// is [`discard`](Self::discard)ed.
    pub fn reserve(&self, id: &str, max: u32, until: u64, now: u64) -> Reserved {
        let mut entries = self.lock();
        let Some(entry) = Self::entry(&mut entries, id, until, now) else {
            return Reserved::Refused;
        };
        if entry.finished != Finished::No {
            return Reserved::Refused;
        }
        if entry.wrong >= max {
            entry.finished = Finished::Discarded;
            return Reserved::Refused;
        }
        entry.wrong += 1;
        Reserved::Left(max - entry.wrong)
    }

    /// Marks the pending login `id` finished. Returns `false` if it was
    /// already (or cannot be kept count of): a second completion (a
    /// replayed or copied cookie) fails.
    pub fn finish(&self, id: &str, until: u64, now: u64) -> bool {
        let mut entries = self.lock();
        let Some(entry) = Self::entry(&mut entries, id, until, now) else {
            return false;
        };
        if entry.finished != Finished::No {
            return false;
        }
        entry.finished = Finished::Completed;
        true
    }

    /// Marks the pending login `id` finished without a login: out of
    /// tries, logged out, or replaced by a new one.
    pub fn discard(&self, id: &str, until: u64, now: u64) {
        let mut entries = self.lock();
        if let Some(entry) = Self::entry(&mut entries, id, until, now) {
            if entry.finished == Finished::No {
                entry.finished = Finished::Discarded;
            }
        }
    }

    /// The entry of `id`, made if needed; `None` when the ledger is full of
    /// pending logins completed and not yet expired, which it must not
    /// forget (one would then complete twice): fail closed.
    fn entry<'a>(
        entries: &'a mut HashMap<String, LedgerEntry>,
        id: &str,
        until: u64,
        now: u64,
    ) -> Option<&'a mut LedgerEntry> {
        if !entries.contains_key(id) && !Self::make_room(entries, now) {
            tracing::error!(target: "latch", "two-step ledger full: a code is refused");
            return None;
        }
        Some(entries.entry(id.to_owned()).or_insert(LedgerEntry {
            wrong: 0,
            finished: Finished::No,
            until,
        }))
    }

    /// Makes room for one more entry: drops the expired ones, then the
    /// open and discarded ones (whose codes the throttle counts too), never
    /// a completed one. Returns whether there is room.
    fn make_room(entries: &mut HashMap<String, LedgerEntry>, now: u64) -> bool {
        if entries.len() < LEDGER_CAPACITY {
            return true;
        }
        entries.retain(|_, entry| entry.until >= now);
        if entries.len() >= LEDGER_CAPACITY {
            entries.retain(|_, entry| entry.finished == Finished::Completed);
        }
        entries.len() < LEDGER_CAPACITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_counted_before_they_are_checked_and_a_login_finishes_once() {
        let ledger = Ledger::default();
        assert_eq!(ledger.wrong_so_far("a"), Some(0));
        assert_eq!(ledger.reserve("a", 3, 100, 0), Reserved::Left(2));
        assert_eq!(ledger.reserve("a", 3, 100, 0), Reserved::Left(1));
        assert_eq!(ledger.wrong_so_far("a"), Some(2));
        assert_eq!(ledger.reserve("a", 3, 100, 0), Reserved::Left(0));
        assert_eq!(ledger.reserve("a", 3, 100, 0), Reserved::Refused);
        assert_eq!(ledger.wrong_so_far("a"), None, "out of tries: finished");
        assert!(!ledger.finish("a", 100, 0), "cannot complete");
        assert!(ledger.finish("b", 100, 0));
        assert!(!ledger.finish("b", 100, 0), "a second completion fails");
        assert_eq!(ledger.reserve("b", 3, 100, 0), Reserved::Refused);
        ledger.discard("c", 100, 0);
        assert_eq!(ledger.wrong_so_far("c"), None);
        assert!(!ledger.finish("c", 100, 0), "discarded: cannot complete");
        ledger.discard("b", 100, 0);
        assert!(!ledger.finish("b", 100, 0), "still completed");
    }

    #[test]
    fn a_full_ledger_forgets_the_expired_then_the_unfinished_never_a_finished_one() {
        let ledger = Ledger::default();
        for i in 0..LEDGER_CAPACITY {
            let until = if i < 10 { 5 } else { 1_000 };
            if i % 2 == 0 {
                ledger.finish(&i.to_string(), until, 0);
            } else {
                ledger.reserve(&i.to_string(), 5, until, 0);
            }
        }
        assert!(ledger.finish("new", 1_000, 10));
        assert_eq!(ledger.wrong_so_far("4"), Some(0), "expired, forgotten");
        assert_eq!(ledger.wrong_so_far("500"), None, "finished, kept");
        // Full of finished ones: the unfinished go first.
        for i in 0..LEDGER_CAPACITY {
            ledger.finish(&format!("f{i}"), 1_000, 10);
        }
        assert_eq!(ledger.wrong_so_far("501"), Some(0), "open, forgotten");
        assert_eq!(ledger.wrong_so_far("500"), None, "finished, still kept");
        assert_eq!(
            ledger.reserve("another", 5, 1_000, 10),
            Reserved::Refused,
            "full of live finished ones: fail closed"
        );
    }

    #[test]
    fn a_ledger_full_of_discarded_logins_still_takes_new_ones() {
        let ledger = Ledger::default();
        for i in 0..LEDGER_CAPACITY {
            ledger.discard(&i.to_string(), 1_000, 0);
        }
        assert_eq!(ledger.reserve("new", 5, 1_000, 0), Reserved::Left(4));
        assert!(ledger.finish("new", 1_000, 0));
    }

    #[test]
    fn a_claim_of_another_shape_is_no_pending_login() {
        let good = serde_json::json!({
            "u": "user001", "a": "fp", "t": 10, "d": null, "id": "AAAAAAAAAAAAAAAAAAAAAA"
        });
        assert!(Pending::from_claim(&good).is_some());
        for bad in [
            serde_json::json!({ "u": "user001", "a": "fp", "t": 10, "d": null, "id": "short" }),
            serde_json::json!({ "u": "user001", "t": 10, "id": "AAAAAAAAAAAAAAAAAAAAAA" }),
            serde_json::json!({ "u": "user001", "a": "fp", "t": -1, "d": null, "id": "AAAAAAAAAAAAAAAAAAAAAA" }),
            serde_json::json!("a string"),
            serde_json::json!([1, 2]),
        ] {
            assert!(Pending::from_claim(&bad).is_none(), "{bad}");
        }
    }
}
