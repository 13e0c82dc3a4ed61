//! A remember-me store in the process's memory: for tests and for apps that
//! run as one process and accept that a restart forgets every remembered login.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::remember::{RememberStore, Rotation, StoreError, StoredToken};

/// Remember-me tokens in memory. Clones share the same tokens; another
/// process (another instance of the app) sees none of them, and a restart
/// forgets them all (their users log in again).
///
/// Expired tokens are refused at once, but stay in memory until
/// [`RevocableRemember::spawn_purge`](crate::remember::RevocableRemember::spawn_purge)
/// deletes them:
///
/// ```
/// use axum_latch::stores::MemoryStore;
/// use axum_latch::remember::RevocableRemember;
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let tokens = RevocableRemember::new(MemoryStore::new());
/// tokens.spawn_purge(Duration::from_secs(60 * 60));
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tokens: Arc<Mutex<Tokens>>,
    /// The session registry's records and feed
    /// ([`SessionStore`](crate::registry::SessionStore)).
    pub(super) sessions: super::memory_sessions::SharedSessions,
}

#[derive(Debug, Default)]
struct Tokens {
    by_selector: HashMap<String, StoredToken>,
    by_user: HashMap<String, BTreeSet<String>>,
}

impl Tokens {
    fn remove(&mut self, selector: &str) -> Option<StoredToken> {
        let token = self.by_selector.remove(selector)?;
        if let Some(selectors) = self.by_user.get_mut(&token.user_id) {
            selectors.remove(selector);
            if selectors.is_empty() {
                self.by_user.remove(&token.user_id);
            }
        }
        Some(token)
    }
}

impl MemoryStore {
    /// An empty store.
    ///
    /// ```
    /// use axum_latch::stores::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// let shared = store.clone(); // the same tokens
    /// assert!(shared.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tokens are stored, expired ones included until purged.
    ///
    /// ```
    /// use axum_latch::stores::MemoryStore;
    ///
    /// assert_eq!(MemoryStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().by_selector.len()
    }

    /// Whether no token is stored.
    ///
    /// ```
    /// use axum_latch::stores::MemoryStore;
    ///
    /// assert!(MemoryStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Tokens> {
        // Every change below is a single step, so a panic elsewhere cannot
        // leave the maps half-changed: a poisoned lock is still consistent.
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RememberStore for MemoryStore {
    async fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
        let mut tokens = self.lock();
        tokens.remove(&token.selector);
        tokens
            .by_user
            .entry(token.user_id.clone())
            .or_default()
            .insert(token.selector.clone());
        tokens
            .by_selector
            .insert(token.selector.clone(), token.clone());
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>, StoreError> {
        Ok(self.lock().by_selector.get(selector).cloned())
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        let mut tokens = self.lock();
        match tokens.by_selector.get_mut(rotation.selector) {
            Some(token)
                if token.validator_hash == *rotation.expected
                    && token.confirmed == rotation.confirmed =>
            {
                token.previous_hash = Some(*rotation.previous);
                token.validator_hash = *rotation.replacement;
                token.rotated_at_ms = Some(rotation.rotated_at_ms);
                token.confirmed = false;
                token.last_used_at = rotation.now;
                token.expires_at = rotation.expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn confirm(&self, selector: &str, current: &[u8; 32]) -> Result<bool, StoreError> {
        let mut tokens = self.lock();
        match tokens.by_selector.get_mut(selector) {
            Some(token) if token.validator_hash == *current => {
                token.confirmed = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke(&self, selector: &str) -> Result<bool, StoreError> {
        Ok(self.lock().remove(selector).is_some())
    }

    async fn revoke_series(&self, user_id: &str, series: &str) -> Result<bool, StoreError> {
        let mut tokens = self.lock();
        let found = tokens.by_user.get(user_id).and_then(|selectors| {
            selectors
                .iter()
                .find(|selector| tokens.by_selector[*selector].series == series)
                .cloned()
        });
        Ok(found
            .and_then(|selector| tokens.remove(&selector))
            .is_some())
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut tokens = self.lock();
        let selectors = tokens.by_user.remove(user_id).unwrap_or_default();
        for selector in &selectors {
            tokens.by_selector.remove(selector);
        }
        Ok(selectors.len() as u64)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredToken>, StoreError> {
        let tokens = self.lock();
        let mut list: Vec<StoredToken> = tokens
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .map(|selector| tokens.by_selector[selector].clone())
            .collect();
        list.sort_by_key(|token| std::cmp::Reverse(token.last_used_at));
        Ok(list)
    }

    async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let mut tokens = self.lock();
        let expired: Vec<String> = tokens
            .by_selector
            .values()
            .filter(|token| token.expires_at <= now)
            .map(|token| token.selector.clone())
            .collect();
        for selector in &expired {
            tokens.remove(selector);
        }
        Ok(expired.len() as u64)
    }
}
