//! A bounded cache of users with a time-to-live, for loaders that hit a
//! database on every request (off unless [`Login::cache_users`](crate::Login::cache_users) turns it on).

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::login::user::User;

/// Users loaded recently, by the JSON text of their id.
pub(crate) struct UserCache<U> {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner<U>>,
}

struct Inner<U> {
    users: HashMap<String, Entry<U>>,
    /// Counts removals: a user loaded while one happened may be stale, and
    /// is not cached (see [`UserCache::generation`]).
    generation: u64,
    /// Ids in the order they were cached, oldest first, for eviction, with
    /// the number of the caching. An id cached again is pushed again; its
    /// stale places are skipped.
    order: VecDeque<(String, u64)>,
    /// The number of the next caching.
    next: u64,
}

struct Entry<U> {
    user: Arc<U>,
    cached_at: SystemTime,
    /// Which caching this is, for `order`.
    number: u64,
}

impl<U: User> UserCache<U> {
    /// A cache of at most `capacity` users (at least one), each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            inner: Mutex::new(Inner {
                users: HashMap::new(),
                generation: 0,
                order: VecDeque::new(),
                next: 0,
            }),
        }
    }

    /// The cache's key for a user id: its JSON text, as the session holds it.
    pub fn key(user_id: &Value) -> String {
        user_id.to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<U>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached user with this key, if cached less than the TTL before
    /// `now`.
    pub fn get(&self, key: &str, now: SystemTime) -> Option<Arc<U>> {
        let mut inner = self.lock();
        let entry = inner.users.get(key)?;
        let age = now.duration_since(entry.cached_at).unwrap_or_default();
        if age < self.ttl {
            return Some(entry.user.clone());
        }
        inner.users.remove(key);
        None
    }

    /// Read before calling the loader, and passed to [`insert`](Self::insert).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches `user`, loaded when the cache was at `generation`, under
    /// `key`, evicting the oldest users when full. If a user was dropped
    /// since (a logout, a new `auth_hash`), the load may have read the
    /// data from before the change, so nothing is cached.
    pub fn insert(&self, generation: u64, key: String, user: Arc<U>, now: SystemTime) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let number = inner.next;
        inner.next += 1;
        inner.users.insert(
            key.clone(),
            Entry {
                user,
                cached_at: now,
                number,
            },
        );
        inner.order.push_back((key, number));
        while inner.users.len() > self.capacity {
            let Some((oldest, number)) = inner.order.pop_front() else {
                break;
            };
            // Only if this place is the entry's latest caching.
            if inner.users.get(&oldest).is_some_and(|e| e.number == number) {
                inner.users.remove(&oldest);
            }
        }
        // Keep stale places from piling up when the same users are cached again and again.
        if inner.order.len() > 2 * self.capacity {
            let Inner { users, order, .. } = &mut *inner;
            order.retain(|(id, number)| users.get(id).is_some_and(|e| e.number == *number));
        }
    }

    /// Drops the user with this key, if cached.
    pub fn remove(&self, key: &str) {
        let mut inner = self.lock();
        inner.users.remove(key);
        inner.generation += 1;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Clone, Debug, PartialEq)]
    struct Account(u64, &'static str);

    impl User for Account {
        type Id = u64;
        fn id(&self) -> u64 {
            self.0
        }
        fn auth_hash(&self) -> &[u8] {
            self.1.as_bytes()
        }
    }

    fn key(id: u64) -> String {
        UserCache::<Account>::key(&json!(id))
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn get(cache: &UserCache<Account>, id: u64) -> Option<Account> {
        cache.get(&key(id), T0).map(|user| (*user).clone())
    }

    fn put(cache: &UserCache<Account>, generation: u64, user: Account) {
        cache.insert(generation, key(user.0), Arc::new(user), T0);
    }

    #[test]
    fn keeps_users_until_removed() {
        let cache = UserCache::new(10, Duration::from_secs(60));
        assert_eq!(get(&cache, 1), None);
        put(&cache, 0, Account(1, "h"));
        assert_eq!(get(&cache, 1), Some(Account(1, "h")));
        cache.remove(&key(1));
        assert_eq!(get(&cache, 1), None);
    }

    #[test]
    fn a_user_loaded_across_a_removal_is_not_cached() {
        let cache = UserCache::new(10, Duration::from_secs(60));
        let before = cache.generation();
        // A logout or a new auth_hash while the loader was running.
        cache.remove(&key(2));
        put(&cache, before, Account(1, "maybe stale"));
        assert_eq!(get(&cache, 1), None);
        put(&cache, cache.generation(), Account(1, "h"));
        assert_eq!(get(&cache, 1), Some(Account(1, "h")));
    }

    #[test]
    fn users_expire_after_the_ttl() {
        let cache = UserCache::new(10, Duration::from_secs(20));
        put(&cache, 0, Account(1, "h"));
        let at = |secs| cache.get(&key(1), T0 + Duration::from_secs(secs));
        assert!(at(19).is_some());
        assert!(at(20).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = UserCache::new(10, Duration::ZERO);
        put(&cache, 0, Account(1, "h"));
        assert_eq!(get(&cache, 1), None);
    }

    #[test]
    fn the_oldest_users_go_first_when_full() {
        let cache = UserCache::new(3, Duration::from_secs(60));
        for id in 1..=3 {
            put(&cache, 0, Account(id, "h"));
        }
        // Caching 1 again makes 2 the oldest.
        put(&cache, 0, Account(1, "h2"));
        put(&cache, 0, Account(4, "h"));
        assert_eq!(cache.len(), 3);
        assert_eq!(get(&cache, 2), None);
        assert_eq!(get(&cache, 1), Some(Account(1, "h2")));
        assert!(get(&cache, 3).is_some() && get(&cache, 4).is_some());
    }

    #[test]
    fn stays_bounded_under_churn() {
        let cache = UserCache::new(5, Duration::from_secs(60));
        for round in 0..1000u64 {
            put(&cache, 0, Account(round % 7, "h"));
            assert!(cache.len() <= 5);
            assert!(cache.lock().order.len() <= 10 + 1);
        }
    }

    #[test]
    fn ids_of_other_json_types_are_other_keys() {
        assert_ne!(
            UserCache::<Account>::key(&json!(1)),
            UserCache::<Account>::key(&json!("1"))
        );
    }
}
