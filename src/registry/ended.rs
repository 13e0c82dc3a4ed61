//! The in-memory set of ended sessions and per-user cut-offs that every
//! logged-in request is checked against, with no store round trip.

use serde_json::Value;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

use crate::registry::Ending;

/// A session id's 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionKey(pub(crate) [u64; 2]);

impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The bits are random, and only ids latch made get here.
        state.write_u64(self.0[0] ^ self.0[1]);
    }
}

/// Hashes a [`SessionKey`] to its own (random) bits.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A cut-off: sessions that logged in at or before `not_before` are ended,
/// but for `except`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cutoff {
    not_before: u64,
    except: Option<SessionKey>,
    until: u64,
}

impl Cutoff {
    /// Whether this cut-off ends a login made at `login_at` (`None`:
    /// unknown) in the session `key`.
    fn ends(&self, login_at: Option<u64>, key: Option<SessionKey>) -> bool {
        let kept = key.is_some() && self.except == key;
        !kept && login_at.is_none_or(|at| at <= self.not_before)
    }

    /// Whether this cut-off ends every login `other` ends, for at least as
    /// long: `other` then adds nothing.
    fn covers(&self, other: &Cutoff) -> bool {
        self.not_before >= other.not_before
            && (self.except.is_none() || self.except == other.except)
            && self.until >= other.until
    }
}

/// The most cut-offs kept per user; past it, the two earliest are merged
/// into one that ends at least what both did.
const MAX_CUTOFFS: usize = 8;

/// A user's cut-offs. A login is ended if any of them ends it: each does
/// what its maker asked, whatever order an instance hears them in. Most
/// users have one; a cut-off that another covers is dropped.
#[derive(Debug, Clone)]
struct UserCutoffs {
    user_id: Box<str>,
    cutoffs: Vec<Cutoff>,
}

impl UserCutoffs {
    fn add(&mut self, cutoff: Cutoff) {
        if self.cutoffs.iter().any(|kept| kept.covers(&cutoff)) {
            return;
        }
        self.cutoffs.retain(|kept| !cutoff.covers(kept));
        self.cutoffs.push(cutoff);
        if self.cutoffs.len() > MAX_CUTOFFS {
            // The safe side: one cut-off as late as the later of the two,
            // keeping a session only if both kept it.
            self.cutoffs.sort_by_key(|c| c.not_before);
            let first = self.cutoffs.remove(0);
            let second = &mut self.cutoffs[0];
            if second.except != first.except {
                second.except = None;
            }
            second.until = second.until.max(first.until);
        }
    }
}

/// Ended sessions (until they could no longer be valid anyway) and the
/// users' cut-offs, as this instance knows them.
pub(crate) struct EndedSet {
    /// Ended session → when it may be forgotten (seconds, saturated to u32).
    sessions: RwLock<HashMap<SessionKey, u32, BuildHasherDefault<KeyHasher>>>,
    /// Hash of the user id's JSON text → that user's cut-offs (more than one
    /// user only when two ids share a hash).
    users: RwLock<HashMap<u64, Vec<UserCutoffs>, BuildHasherDefault<KeyHasher>>>,
    /// How many users have a cut-off: none, and requests skip hashing the id.
    user_count: AtomicUsize,
}

impl Default for EndedSet {
    fn default() -> Self {
        Self {
            sessions: RwLock::default(),
            users: RwLock::default(),
            user_count: AtomicUsize::new(0),
        }
    }
}

/// The keys of the user-id hash: random per process, the same for every
/// registry, so that a session cookie's memo can keep the hash.
fn user_hasher() -> &'static RandomState {
    static HASHER: OnceLock<RandomState> = OnceLock::new();
    HASHER.get_or_init(RandomState::new)
}

/// The hash of a user id's JSON text, as cut-offs are keyed.
pub(crate) fn user_hash(user_id: &Value) -> u64 {
    let mut hasher = user_hasher().build_hasher();
    let mut sink = TextSink {
        hasher: Some(&mut hasher),
        compare: None,
    };
    // Writing JSON to this sink cannot fail.
    let _ = serde_json::to_writer(&mut sink, user_id);
    hasher.finish()
}

/// The same hash, of JSON text.
fn text_hash(text: &str) -> u64 {
    let mut hasher = user_hasher().build_hasher();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Feeds the JSON text of a user id into a hasher, or compares it with
/// a stored text, without making a string.
struct TextSink<'a> {
    hasher: Option<&'a mut dyn Hasher>,
    compare: Option<(&'a [u8], usize, bool)>,
}

impl std::io::Write for TextSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.write(bytes);
        }
        if let Some((text, at, same)) = self.compare.as_mut() {
            *same = *same && text.get(*at..*at + bytes.len()) == Some(bytes);
            *at += bytes.len();
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lock_poisoned<T>(poisoned: std::sync::PoisonError<T>) -> T {
    // Every change is one insert or one removal: never half made.
    poisoned.into_inner()
}

impl EndedSet {
    fn same_user(user_id: &Value, text: &str) -> bool {
        let mut sink = TextSink {
            hasher: None,
            compare: Some((text.as_bytes(), 0, true)),
        };
        let _ = serde_json::to_writer(&mut sink, user_id);
        matches!(sink.compare, Some((_, at, true)) if at == text.len())
    }

    /// Whether this session has been ended.
    pub(crate) fn session_ended(&self, key: SessionKey) -> bool {
        let sessions = self.sessions.read().unwrap_or_else(lock_poisoned);
        !sessions.is_empty() && sessions.contains_key(&key)
    }

    /// Whether a login of `user_id` made at `login_at` (seconds; `None`:
    /// unknown) falls before the user's cut-off. `key` is the session's id,
    /// spared by a cut-off that keeps it; `memo` keeps the id's hash.
    pub(crate) fn cut_off(
        &self,
        user_id: &Value,
        memo: Option<&OnceLock<u64>>,
        login_at: Option<u64>,
        key: Option<SessionKey>,
    ) -> bool {
        if self.user_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let hash = match memo {
            Some(memo) => *memo.get_or_init(|| user_hash(user_id)),
            None => user_hash(user_id),
        };
        let users = self.users.read().unwrap_or_else(lock_poisoned);
        let Some(entries) = users.get(&hash) else {
            return false;
        };
        entries
            .iter()
            .find(|entry| Self::same_user(user_id, &entry.user_id))
            .is_some_and(|entry| entry.cutoffs.iter().any(|c| c.ends(login_at, key)))
    }

    /// Takes in an ending (heard from the feed, or made here). Applying the
    /// same ending twice changes nothing.
    pub(crate) fn apply(&self, ending: &Ending, now: u64) {
        if ending.until() <= now {
            return;
        }
        match ending {
            Ending::Session {
                session_id, until, ..
            } => {
                let Some(key) = crate::crypto::random::session_key(session_id) else {
                    return;
                };
                let until = u32::try_from(*until).unwrap_or(u32::MAX);
                let mut sessions = self.sessions.write().unwrap_or_else(lock_poisoned);
                let kept = sessions.entry(SessionKey(key)).or_insert(until);
                *kept = (*kept).max(until);
            }
            Ending::User {
                user_id,
                not_before,
                except,
                until,
            } => {
                let cutoff = Cutoff {
                    not_before: *not_before,
                    except: except
                        .as_deref()
                        .and_then(crate::crypto::random::session_key)
                        .map(SessionKey),
                    until: *until,
                };
                let hash = text_hash(user_id);
                let mut users = self.users.write().unwrap_or_else(lock_poisoned);
                let entries = users.entry(hash).or_default();
                // Every cut-off ends what it ends: a later one does not undo
                // an earlier one heard after it (an admin's "made before the
                // compromise", another instance's clock), which would end
                // the session the later one kept. Two at the same second
                // keep neither's session.
                match entries.iter_mut().find(|e| *e.user_id == **user_id) {
                    Some(entry) => entry.add(cutoff),
                    None => {
                        entries.push(UserCutoffs {
                            user_id: user_id.as_str().into(),
                            cutoffs: vec![cutoff],
                        });
                        self.user_count.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }
    }

    /// Forgets endings whose `until` has passed.
    pub(crate) fn purge(&self, now: u64) {
        let now32 = u32::try_from(now).unwrap_or(u32::MAX);
        self.sessions
            .write()
            .unwrap_or_else(lock_poisoned)
            .retain(|_, until| *until > now32);
        let mut users = self.users.write().unwrap_or_else(lock_poisoned);
        let mut removed = 0;
        users.retain(|_, entries| {
            let before = entries.len();
            for entry in entries.iter_mut() {
                entry.cutoffs.retain(|cutoff| cutoff.until > now);
            }
            entries.retain(|entry| !entry.cutoffs.is_empty());
            removed += before - entries.len();
            !entries.is_empty()
        });
        self.user_count.fetch_sub(removed, Ordering::AcqRel);
    }

    /// How many ended sessions and user cut-offs are kept.
    pub(crate) fn len(&self) -> (usize, usize) {
        (
            self.sessions.read().unwrap_or_else(lock_poisoned).len(),
            self.user_count.load(Ordering::Acquire),
        )
    }

    /// Bytes the ended sessions' table holds (its buckets and control bytes).
    pub(crate) fn heap_bytes(&self) -> usize {
        let sessions = self.sessions.read().unwrap_or_else(lock_poisoned);
        // The table keeps 7 of every 8 buckets in use (all but one when small).
        let capacity = sessions.capacity();
        let buckets = if capacity < 8 {
            capacity + 1
        } else {
            (capacity * 8 / 7).next_power_of_two()
        };
        buckets * (std::mem::size_of::<(SessionKey, u32)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random;

    fn ended(id: &str, until: u64) -> Ending {
        Ending::Session {
            session_id: id.to_owned(),
            user_id: "1".to_owned(),
            until,
        }
    }

    fn key(id: &str) -> SessionKey {
        SessionKey(random::session_key(id).unwrap())
    }

    #[test]
    fn an_ended_session_stays_ended_until_it_could_not_be_valid() {
        let set = EndedSet::default();
        let id = random::session_id().unwrap();
        let other = random::session_id().unwrap();
        set.apply(&ended(&id, 100), 10);
        set.apply(&ended(&id, 50), 10); // a repeat keeps the later time
        assert!(set.session_ended(key(&id)));
        assert!(!set.session_ended(key(&other)));
        set.purge(99);
        assert!(set.session_ended(key(&id)));
        set.purge(100);
        assert!(!set.session_ended(key(&id)));
        set.apply(&ended(&id, 100), 100); // already past: not kept
        assert_eq!(set.len(), (0, 0));
    }

    #[test]
    fn a_cut_off_ends_earlier_logins_but_the_one_it_keeps() {
        let set = EndedSet::default();
        let kept = random::session_id().unwrap();
        let user = Value::from("susan");
        let cutoff = |not_before, except: Option<&str>| Ending::User {
            user_id: user.to_string(),
            not_before,
            except: except.map(str::to_owned),
            until: 1000,
        };
        assert!(!set.cut_off(&user, None, Some(5), None));
        set.apply(&cutoff(10, Some(&kept)), 0);
        assert!(set.cut_off(&user, None, Some(10), None));
        assert!(set.cut_off(&user, None, None, None));
        assert!(!set.cut_off(&user, None, Some(11), None));
        assert!(!set.cut_off(&user, None, Some(5), Some(key(&kept))));
        assert!(!set.cut_off(&Value::from("david"), None, Some(5), None));
        assert!(!set.cut_off(&Value::from(42), None, Some(5), None));
        // An earlier cut-off arriving late still ends what it ends: the
        // kept session, if it began before it.
        set.apply(&cutoff(8, None), 0);
        assert!(set.cut_off(&user, None, Some(5), Some(key(&kept))));
        assert!(!set.cut_off(&user, None, Some(9), Some(key(&kept))));
        assert!(set.cut_off(&user, None, Some(9), None));
        // A later one ends the session the first kept.
        set.apply(&cutoff(20, None), 0);
        assert!(set.cut_off(&user, None, Some(15), Some(key(&kept))));
        assert_eq!(set.len(), (0, 1));
        set.purge(1000);
        assert!(!set.cut_off(&user, None, Some(5), None));
        assert_eq!(set.len(), (0, 0));
    }

    #[test]
    fn cut_offs_end_the_same_logins_whatever_order_they_arrive_in() {
        let user = Value::from("susan");
        let ids: Vec<String> = (0..3).map(|_| random::session_id().unwrap()).collect();
        let cutoffs = [(10, Some(0)), (8, None), (10, Some(1)), (12, Some(2))].map(
            |(not_before, except): (u64, Option<usize>)| Ending::User {
                user_id: user.to_string(),
                not_before,
                except: except.map(|i| ids[i].clone()),
                until: 1000,
            },
        );
        let answers = |order: &[usize]| {
            let set = EndedSet::default();
            for &i in order {
                set.apply(&cutoffs[i], 0);
            }
            let mut seen = Vec::new();
            for at in [5, 8, 9, 10, 11, 12, 13] {
                for id in ids.iter().map(|id| Some(key(id))).chain([None]) {
                    seen.push(set.cut_off(&user, None, Some(at), id));
                }
            }
            seen
        };
        let first = answers(&[0, 1, 2, 3]);
        for order in [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
            assert_eq!(answers(&order), first, "{order:?}");
        }
        // The session kept at 12 began at 9: the cut-off at 10 (which kept
        // another) ends it.
        let set = EndedSet::default();
        for cutoff in &cutoffs {
            set.apply(cutoff, 0);
        }
        assert!(set.cut_off(&user, None, Some(9), Some(key(&ids[2]))));
        assert!(!set.cut_off(&user, None, Some(11), Some(key(&ids[2]))));
    }

    #[test]
    fn a_users_cut_offs_are_bounded_and_merged_on_the_safe_side() {
        let set = EndedSet::default();
        let user = Value::from(7);
        let ids: Vec<String> = (0..20).map(|_| random::session_id().unwrap()).collect();
        for (i, id) in ids.iter().enumerate() {
            set.apply(
                &Ending::User {
                    user_id: "7".to_owned(),
                    not_before: 100 + i as u64,
                    except: Some(id.clone()),
                    until: 1000,
                },
                0,
            );
        }
        assert_eq!(set.len(), (0, 1));
        let users = set.users.read().unwrap();
        let kept: usize = users.values().flatten().map(|e| e.cutoffs.len()).sum();
        assert!(kept <= MAX_CUTOFFS, "{kept}");
        drop(users);
        // Every login each cut-off ended is still ended.
        for i in 0..ids.len() {
            let other = &ids[(i + 1) % ids.len()];
            assert!(set.cut_off(&user, None, Some(100 + i as u64), Some(key(other))));
        }
        // The last one's kept session, made after the others, still works.
        assert!(!set.cut_off(&user, None, Some(119), Some(key(&ids[19]))));
        assert!(set.cut_off(&user, None, Some(119), Some(key(&ids[18]))));
        set.purge(1000);
        assert_eq!(set.len(), (0, 0));
    }

    #[test]
    fn user_ids_are_told_apart_by_their_json() {
        let set = EndedSet::default();
        set.apply(
            &Ending::User {
                user_id: "42".to_owned(),
                not_before: 10,
                except: None,
                until: 100,
            },
            0,
        );
        assert!(set.cut_off(&Value::from(42), None, Some(1), None));
        assert!(!set.cut_off(&Value::from("42"), None, Some(1), None));
        assert!(!set.cut_off(&Value::from(420), None, Some(1), None));
        assert!(!set.cut_off(&Value::from(4), None, Some(1), None));
    }
}
