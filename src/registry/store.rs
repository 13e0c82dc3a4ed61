//! The `SessionStore` trait: where a session registry keeps its records and
//! the feed of endings that every instance follows.

use std::future::Future;
use std::sync::Arc;

use crate::registry::{Change, Ending, SessionRecord};
use crate::remember::StoreError;

/// What a store calls when its change feed says there is something new:
/// the registry then reads [`SessionStore::changes`].
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Where a [`SessionRegistry`](crate::registry::SessionRegistry) keeps the
/// records of who is logged in where, and the endings every instance of the
/// app must hear of.
///
/// latch's four stores implement it next to
/// [`RememberStore`](crate::remember::RememberStore), behind the same
/// features: [`MemoryStore`](crate::stores::MemoryStore), `SqliteStore`,
/// `PostgresStore` and `RedisStore`. Every store passes the same contract
/// tests.
///
/// No method is called on the request path of a logged-in request except
/// [`touch`](Self::touch), and that at most once per session per touch
/// period, in the background. Methods take `now` from the caller (seconds
/// since the Unix epoch).
pub trait SessionStore: Send + Sync + 'static {
    /// Records a session, or refreshes the record of a session already
    /// recorded (its `device`, `last_active_at`, `expires_at` and
    /// `remembered`; `created_at` stays the first one). A session that has
    /// been [ended](Self::end) is not recorded again.
    fn save(&self, record: &SessionRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets the session's `last_active_at` to `at` (if later), if it is
    /// recorded and not ended.
    fn touch(
        &self,
        session_id: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The user's sessions that are recorded, not ended and not expired at
    /// `now`, most recently active first.
    fn list(
        &self,
        user_id: &str,
        now: u64,
    ) -> impl Future<Output = Result<Vec<SessionRecord>, StoreError>> + Send;

    /// Records an ending: it gets the next sequence number in the change
    /// feed, the sessions it ends leave [`list`](Self::list) (an
    /// [`Ending::User`] ends those created at or before `not_before`, except
    /// `except`), and the feed's listeners are woken. Returns the sequence
    /// number. Recording the same ending twice (two instances ending one
    /// session at once) is not an error.
    fn end(&self, ending: &Ending) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The changes numbered after `after`, in order, at most `limit` of them.
    /// Changes whose `until` has passed may be missing (purged).
    fn changes(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;

    /// Follows the store's change feed (Redis pub/sub, PostgreSQL `LISTEN`),
    /// calling `wake` for every change recorded by any instance, until the
    /// connection fails: then it returns the error, and the registry calls it
    /// again after catching up. A store without a feed (SQLite) never
    /// returns; the registry polls it instead.
    fn listen(&self, wake: Wake) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = wake;
        std::future::pending()
    }

    /// Whether [`listen`](Self::listen) hears of changes as they happen
    /// (`false`: the registry finds them by polling [`changes`](Self::changes)).
    fn pushes_changes(&self) -> bool {
        false
    }

    /// Deletes records and changes whose `expires_at` / `until` is at or
    /// before `now`. Returns how many it deleted.
    fn purge(&self, now: u64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
