//! The background task that keeps an instance's ended set current: it
//! follows the store's change feed, catches up after every gap, writes
//! endings the store missed while it was down, and forgets stale endings.

use futures_util::future::{select, Either};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::registry::{lock, Inner, SessionRegistry};

/// How often a store with a change feed is read anyway, as a check on it.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often a store without one is read.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How long to wait before listening again after the feed failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// How often endings past their time are forgotten, here and in the store.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Starts following the store's feed for `registry`; the tasks end once the
/// registry (every clone) is dropped.
pub(crate) fn spawn(registry: &SessionRegistry) {
    let weak = Arc::downgrade(&registry.inner);
    let pushes = registry.inner.store.pushes_changes();
    if pushes {
        let closed = registry.inner.closed.subscribe();
        tokio::spawn(listen(weak.clone(), closed));
    }
    let every =
        registry
            .inner
            .settings
            .poll_every
            .unwrap_or(if pushes { CHECK_EVERY } else { POLL_EVERY });
    let wake = registry.inner.wake.clone();
    tokio::spawn(follow(weak, wake, every));
}

/// Listens to the store's change feed, waking the follower on every change;
/// after a failure, listens again (the follower catches up meanwhile).
async fn listen(weak: Weak<Inner>, mut closed: tokio::sync::watch::Receiver<()>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let store = inner.store.clone();
        let notify = inner.wake.clone();
        drop(inner);
        let wake: crate::registry::Wake = Arc::new(move || notify.notify_one());
        let listening = store.listen(wake);
        // The registry gone, its sender is dropped and this stops listening.
        let result = match select(listening, Box::pin(closed.changed())).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => return,
        };
        let Some(inner) = weak.upgrade() else { return };
        match result {
            Ok(()) => {
                tracing::warn!(target: "latch", "session registry's change feed closed; listening again")
            }
            Err(error) => {
                tracing::error!(target: "latch", %error, "session registry's change feed failed; listening again")
            }
        }
        // Whatever was missed meanwhile, the follower reads.
        inner.wake.notify_one();
        drop(inner);
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

/// Reads the feed whenever woken (or every `every`), writes pending
/// endings, and purges.
async fn follow(weak: Weak<Inner>, wake: Arc<tokio::sync::Notify>, every: Duration) {
    let mut failing = false;
    let mut last_purge = tokio::time::Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let registry = SessionRegistry { inner };
        write_pending(&registry).await;
        match registry.catch_up().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(target: "latch", "session registry caught up with its store");
            }
            Ok(()) => {}
            Err(error) => {
                if !failing {
                    tracing::error!(target: "latch", %error, "session registry cannot read its store; serving with the endings it knows");
                }
                failing = true;
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            let now = registry.now();
            registry.inner.ended.purge(now);
            if let Err(error) = registry.inner.store.purge(now).await {
                tracing::warn!(target: "latch", %error, "session store not purged");
            }
        }
        drop(registry);
        let _ = tokio::time::timeout(every, wake.notified()).await;
    }
}

/// Writes the endings the store failed to take, oldest first; stops at the
/// first failure (the store is still down).
async fn write_pending(registry: &SessionRegistry) {
    let pending: Vec<_> = std::mem::take(&mut *lock(&registry.inner.pending));
    let mut left = pending.into_iter();
    for ending in left.by_ref() {
        if let Err(error) = registry.inner.store.end(&ending).await {
            tracing::debug!(target: "latch", %error, "session ending still not recorded");
            let mut pending = lock(&registry.inner.pending);
            let newer = std::mem::take(&mut *pending);
            pending.push(ending);
            pending.extend(left);
            pending.extend(newer);
            return;
        }
        tracing::info!(target: "latch", user_id = %ending.user_id(), "session ending recorded after the store came back");
    }
}
