//! The session registry's records and change feed in the process's memory,
//! for [`MemoryStore`]: for tests, and for apps that run as one process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::registry::{Change, Ending, SessionRecord, SessionStore, Wake};
use crate::remember::StoreError;
use crate::stores::MemoryStore;

/// The registry's side of a [`MemoryStore`].
#[derive(Default)]
pub(crate) struct Sessions {
    state: Mutex<State>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Records by session id; an ended one stays (marked) until it expires,
    /// so that a late `save` cannot bring it back.
    records: HashMap<String, (SessionRecord, bool)>,
    /// The change feed, by sequence number.
    changes: BTreeMap<u64, Ending>,
    seq: u64,
    listeners: Vec<Wake>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each change below is one step: a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SessionStore for MemoryStore {
    async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut state = self.sessions.lock();
        match state.records.get_mut(&record.session_id) {
            Some((_, true)) => {}
            Some((kept, false)) => {
                let created_at = kept.created_at;
                *kept = SessionRecord {
                    created_at,
                    ..record.clone()
                };
            }
            None => {
                state
                    .records
                    .insert(record.session_id.clone(), (record.clone(), false));
            }
        }
        Ok(())
    }

    async fn touch(&self, session_id: &str, at: u64) -> Result<(), StoreError> {
        let mut state = self.sessions.lock();
        if let Some((record, false)) = state.records.get_mut(session_id) {
            record.last_active_at = record.last_active_at.max(at);
        }
        Ok(())
    }

    async fn list(&self, user_id: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        let state = self.sessions.lock();
        let mut list: Vec<SessionRecord> = state
            .records
            .values()
            .filter(|(record, ended)| {
                !ended && record.user_id == user_id && record.expires_at > now
            })
            .map(|(record, _)| record.clone())
            .collect();
        list.sort_by(|a, b| {
            b.last_active_at
                .cmp(&a.last_active_at)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        Ok(list)
    }

    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        let (seq, listeners) = {
            let mut state = self.sessions.lock();
            if let Ending::Session {
                session_id,
                user_id,
                until,
            } = ending
            {
                // A session never recorded (its login's `save` failed) is
                // kept as ended, so that no later `save` records it.
                state.records.entry(session_id.clone()).or_insert_with(|| {
                    let record = SessionRecord {
                        session_id: session_id.clone(),
                        user_id: user_id.clone(),
                        device: String::new(),
                        created_at: 0,
                        last_active_at: 0,
                        expires_at: *until,
                        remembered: false,
                    };
                    (record, true)
                });
            }
            for (record, ended) in state.records.values_mut() {
                let ends = match ending {
                    Ending::Session { session_id, .. } => record.session_id == *session_id,
                    Ending::User {
                        user_id,
                        not_before,
                        except,
                        ..
                    } => {
                        record.user_id == *user_id
                            && record.created_at <= *not_before
                            && except.as_deref() != Some(record.session_id.as_str())
                    }
                };
                *ended |= ends;
            }
            state.seq += 1;
            let seq = state.seq;
            state.changes.insert(seq, ending.clone());
            (seq, state.listeners.clone())
        };
        for wake in listeners {
            wake();
        }
        // This ending's number, not whatever the latest is by now.
        Ok(seq)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let state = self.sessions.lock();
        Ok(state
            .changes
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(seq, ending)| Change {
                seq: *seq,
                ending: ending.clone(),
            })
            .collect())
    }

    async fn listen(&self, wake: Wake) -> Result<(), StoreError> {
        self.sessions.lock().listeners.push(wake);
        std::future::pending().await
    }

    fn pushes_changes(&self) -> bool {
        true
    }

    async fn purge(&self, now: u64) -> Result<u64, StoreError> {
        let mut state = self.sessions.lock();
        let before = state.records.len() + state.changes.len();
        state
            .records
            .retain(|_, (record, _)| record.expires_at > now);
        state.changes.retain(|_, ending| ending.until() > now);
        Ok((before - state.records.len() - state.changes.len()) as u64)
    }
}

// Keeps `Arc` in use for the field's type in `memory.rs`.
pub(crate) type SharedSessions = Arc<Sessions>;
