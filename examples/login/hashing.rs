//! Password hashing for the demo: argon2 on a few threads of its own, one
//! per core, with a bounded wait for a turn, so that a burst of logins
//! queues or is told to come back instead of hashing hundreds of passwords
//! (about 19 MiB each) at once.
//!
//! Dedicated threads rather than Tokio's blocking pool: the pool grows to
//! hundreds of threads under a burst, and the allocator keeps a cache of
//! freed memory per thread, so even hashes run one at a time would leave
//! the process holding gigabytes. With a thread per core, at most that many
//! hashes' memory is in use or kept.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// How long a login waits for a hashing thread before it is told to come back.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// How many logins may wait for a hashing thread, per thread.
const WAITING_PER_THREAD: usize = 128;

/// The hashing threads and the queue in front of them. Clones share them.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    /// One permit per thread: a hash runs only with one.
    turns: Arc<Semaphore>,
    /// How many logins wait for a permit now.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

type Job = Box<dyn FnOnce() + Send>;

/// Every hashing thread is busy and too many logins already wait: answer
/// `503 Service Unavailable` and ask the client to come back.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("every password hashing thread is busy")]
pub struct Busy;

/// A hashing thread kept for one password check or hash.
pub struct Turn {
    hasher: Hasher,
    permit: OwnedSemaphorePermit,
}

impl Hasher {
    /// A thread per core of this machine.
    pub fn per_core() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(threads)
    }

    /// `threads` hashing threads (at least one), and room for
    /// [`WAITING_PER_THREAD`] waiting logins per thread.
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || loop {
                    // A poisoned lock only means another thread panicked
                    // while holding it; the receiver is still whole.
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        // A job that panics loses its answer (the login
                        // gets a 503), not the thread.
                        Ok(job) => drop(std::panic::catch_unwind(AssertUnwindSafe(job))),
                        Err(mpsc::RecvError) => return,
                    }
                })
                .expect("the demo can start its password hashing threads");
        }
        Self {
            jobs,
            turns: Arc::new(Semaphore::new(threads)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: threads * WAITING_PER_THREAD,
        }
    }

    /// Waits for a hashing thread, first come first served: at most
    /// [`MAX_WAIT`], and not at all when too many logins already wait.
    pub async fn turn(&self) -> Result<Turn, Busy> {
        if let Ok(permit) = self.turns.clone().try_acquire_owned() {
            return Ok(self.with(permit));
        }
        // Counted as waiting until this guard drops: when the wait ends,
        // or when the login is cancelled while it waits (its client left).
        let waiting = Waiting::join(&self.waiting);
        if waiting.ahead >= self.max_waiting {
            return Err(Busy);
        }
        let permit = tokio::time::timeout(MAX_WAIT, self.turns.clone().acquire_owned()).await;
        drop(waiting);
        match permit {
            Ok(Ok(permit)) => Ok(self.with(permit)),
            // Timed out, or the semaphore was closed (it never is).
            _ => Err(Busy),
        }
    }

    /// Hashes a new password, when a thread is free.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.turn().await?.hash(password).await
    }

    fn with(&self, permit: OwnedSemaphorePermit) -> Turn {
        Turn {
            hasher: self.clone(),
            permit,
        }
    }
}

/// One login counted among those waiting for a thread, until dropped.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// How many waited when this one joined.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn join(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Turn {
    /// Whether `password` matches the argon2 `hash`.
    pub async fn verify(self, password: String, hash: String) -> Result<bool, Busy> {
        self.run(move || password_auth::verify_password(password, &hash).is_ok())
            .await
    }

    /// An argon2 hash of `password`.
    pub async fn hash(self, password: String) -> Result<String, Busy> {
        self.run(move || password_auth::generate_hash(password))
            .await
    }

    /// Runs `work` on a hashing thread; the turn ends when it is done.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (done, result) = oneshot::channel();
        let permit = self.permit;
        let job: Job = Box::new(move || {
            let _ = done.send(work());
            drop(permit);
        });
        // The threads live as long as the app, so the queue is open; a job
        // that panicked drops its sender, which is reported as busy rather
        // than a crash.
        self.hasher.jobs.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
    }
}
