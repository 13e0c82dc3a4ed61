//! A bounded cache of users with a time-to-live, for loaders that hit a
//! database on every request (off unless [`Login::cache_users`](crate::Login::cache_users) turns it on).

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::user::User;

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
    /// Ids in the order they were cached, oldest first, for eviction. An id
    /// cached again is pushed again; its stale places are skipped.
    order: VecDeque<(String, Instant)>,
}

struct Entry<U> {
    user: U,
    cached_at: Instant,
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

    /// The cached user with this key, if cached less than the TTL ago.
    pub fn get(&self, key: &str) -> Option<U> {
        let mut inner = self.lock();
        let entry = inner.users.get(key)?;
        if entry.cached_at.elapsed() < self.ttl {
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
    pub fn insert(&self, generation: u64, key: String, user: U) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        inner.users.insert(
            key.clone(),
            Entry {
                user,
                cached_at: now,
            },
        );
        inner.order.push_back((key, now));
        while inner.users.len() > self.capacity {
            let Some((oldest, cached_at)) = inner.order.pop_front() else {
                break;
            };
            // Only if this place is the entry's latest caching.
            if inner
                .users
                .get(&oldest)
                .is_some_and(|e| e.cached_at == cached_at)
            {
                inner.users.remove(&oldest);
            }
        }
        // Keep stale places from piling up when the same users are cached again and again.
        if inner.order.len() > 2 * self.capacity {
            let Inner { users, order, .. } = &mut *inner;
            order.retain(|(id, at)| users.get(id).is_some_and(|e| e.cached_at == *at));
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

    #[test]
    fn keeps_users_until_removed() {
        let cache = UserCache::new(10, Duration::from_secs(60));
        assert_eq!(cache.get(&key(1)), None);
        cache.insert(0, key(1), Account(1, "h"));
        assert_eq!(cache.get(&key(1)), Some(Account(1, "h")));
        cache.remove(&key(1));
        assert_eq!(cache.get(&key(1)), None);
    }

    #[test]
    fn a_user_loaded_across_a_removal_is_not_cached() {
        let cache = UserCache::new(10, Duration::from_secs(60));
        let before = cache.generation();
        // A logout or a new auth_hash while the loader was running.
        cache.remove(&key(2));
        cache.insert(before, key(1), Account(1, "maybe stale"));
        assert_eq!(cache.get(&key(1)), None);
        cache.insert(cache.generation(), key(1), Account(1, "h"));
        assert_eq!(cache.get(&key(1)), Some(Account(1, "h")));
    }

    #[test]
    fn users_expire_after_the_ttl() {
        let cache = UserCache::new(10, Duration::from_millis(20));
        cache.insert(0, key(1), Account(1, "h"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&key(1)), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = UserCache::new(10, Duration::ZERO);
        cache.insert(0, key(1), Account(1, "h"));
        assert_eq!(cache.get(&key(1)), None);
    }

    #[test]
    fn the_oldest_users_go_first_when_full() {
        let cache = UserCache::new(3, Duration::from_secs(60));
        for id in 1..=3 {
            cache.insert(0, key(id), Account(id, "h"));
        }
        // Caching 1 again makes 2 the oldest.
        cache.insert(0, key(1), Account(1, "h2"));
        cache.insert(0, key(4), Account(4, "h"));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&key(2)), None);
        assert_eq!(cache.get(&key(1)), Some(Account(1, "h2")));
        assert!(cache.get(&key(3)).is_some() && cache.get(&key(4)).is_some());
    }

    #[test]
    fn stays_bounded_under_churn() {
        let cache = UserCache::new(5, Duration::from_secs(60));
        for round in 0..1000u64 {
            cache.insert(0, key(round % 7), Account(round % 7, "h"));
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
