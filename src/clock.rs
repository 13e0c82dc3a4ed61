//! Where latch reads the time: the system's clock, or a clock that tests
//! move by hand.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time as latch reads it: for session timeouts, freshness, the
/// throttle's delays, remember-me expiry and the user cache.
///
/// [`Clock::system`] is the default everywhere. A test of an app can hand
/// latch a [`Clock::manual`] clock instead, and move it forward to see a
/// session expire, a throttle block end, or a cached user go stale, without
/// waiting: set it with [`Session::clock`](crate::Session::clock) (which
/// the login layer reads too) and
/// [`Throttle::clock`](crate::throttle::Throttle::clock). Clones share the
/// time.
///
/// ```
/// use axum_latch::clock::Clock;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = Clock::manual(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// let same = clock.clone();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(same.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_060));
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system's clock.
    manual: Option<Arc<Mutex<SystemTime>>>,
}

impl Clock {
    /// The system's clock.
    ///
    /// ```
    /// use axum_latch::clock::Clock;
    ///
    /// let clock = Clock::system(); // what latch uses unless told otherwise
    /// assert!(clock.now() <= std::time::SystemTime::now());
    /// ```
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands still at `start` until it is moved with
    /// [`advance`](Self::advance) or [`set`](Self::set).
    ///
    /// ```
    /// use axum_latch::{clock::Clock, SecretKey, Session};
    /// use std::time::SystemTime;
    ///
    /// let clock = Clock::manual(SystemTime::UNIX_EPOCH);
    /// let session = Session::new(SecretKey::generate()?).clock(clock.clone());
    /// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH); // stands still until moved
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn manual(start: SystemTime) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// The current time.
    ///
    /// ```
    /// use axum_latch::clock::Clock;
    /// use std::time::SystemTime;
    ///
    /// let start = SystemTime::now();
    /// assert_eq!(Clock::manual(start).now(), start);
    /// ```
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(time) => *time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Moves a manual clock forward by `by`. The system's clock cannot be
    /// moved: this does nothing to it.
    ///
    /// ```
    /// use axum_latch::clock::Clock;
    /// use std::time::{Duration, SystemTime};
    ///
    /// let clock = Clock::manual(SystemTime::UNIX_EPOCH);
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(60));
    /// ```
    pub fn advance(&self, by: Duration) {
        if let Some(time) = &self.manual {
            let mut time = time.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *time += by;
        }
    }

    /// Sets a manual clock to `to`. Does nothing to the system's clock.
    ///
    /// ```
    /// use axum_latch::clock::Clock;
    /// use std::time::{Duration, SystemTime};
    ///
    /// let clock = Clock::manual(SystemTime::now());
    /// let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    /// clock.set(later);
    /// assert_eq!(clock.now(), later);
    /// ```
    pub fn set(&self, to: SystemTime) {
        if let Some(time) = &self.manual {
            *time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
        }
    }

    /// The current time in whole seconds since the Unix epoch (0 before it).
    pub(crate) fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system()"),
            Some(_) => write!(f, "Clock::manual(at {:?})", self.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        assert_eq!(clock.unix_secs(), 100);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.clone().now(), start + Duration::from_millis(1500));
        clock.set(start);
        assert_eq!(clock.now(), start);
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() <= SystemTime::now());
        assert_eq!(format!("{system:?}"), "Clock::system()");
    }
}
