//! Injected time. A wall clock for signature windows and token lifetimes; fakes for tests.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use guard_secrets::WallClock;
//!
//! let clock = WallClock::fake_at_unix(1_700_000_000);
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_700_000_005);
//! assert_eq!(clock.unix_seconds(), 1_700_000_005);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time: the system clock, or a fake one that only moves when told to.
///
/// Cheap to clone; clones of a fake clock share the same time. Reading the system clock takes no
/// lock and allocates nothing. The default is the system clock.
#[derive(Clone, Default)]
pub struct WallClock {
    /// `None`: the system clock. `Some`: a fake clock's nanoseconds since the Unix epoch.
    fake: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fake {
            None => f.write_str("WallClock::System"),
            Some(nanos) => f
                .debug_tuple("WallClock::Fake")
                .field(&Duration::from_nanos(nanos.load(Ordering::SeqCst)))
                .finish(),
        }
    }
}

impl WallClock {
    /// The system clock.
    ///
    /// ```
    /// use guard_secrets::WallClock;
    /// assert!(WallClock::system().unix_seconds() > 1_700_000_000);
    /// ```
    pub fn system() -> Self {
        Self { fake: None }
    }

    /// A fake clock at `secs` seconds after the Unix epoch; it moves only with
    /// [`advance`](Self::advance) and [`set_unix`](Self::set_unix).
    pub fn fake_at_unix(secs: u64) -> Self {
        Self {
            fake: Some(Arc::new(AtomicU64::new(secs.saturating_mul(1_000_000_000)))),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        match &self.fake {
            None => SystemTime::now(),
            Some(nanos) => UNIX_EPOCH + Duration::from_nanos(nanos.load(Ordering::SeqCst)),
        }
    }

    /// Seconds since the Unix epoch (0 if the clock is before it).
    pub fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Moves a fake clock forward (and every clone of it).
    ///
    /// # Panics
    ///
    /// On the system clock, which cannot be moved (a test that meant a fake clock).
    pub fn advance(&self, by: Duration) {
        self.fake_nanos()
            .fetch_add(by.as_nanos().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    /// Sets a fake clock (and every clone of it) to `secs` seconds after the Unix epoch.
    ///
    /// # Panics
    ///
    /// On the system clock, which cannot be set (a test that meant a fake clock).
    pub fn set_unix(&self, secs: u64) {
        self.fake_nanos()
            .store(secs.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }

    fn fake_nanos(&self) -> &AtomicU64 {
        match &self.fake {
            Some(nanos) => nanos,
            None => panic!("the system WallClock cannot be moved: use WallClock::fake_at_unix"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clones_share_the_time() {
        let a = WallClock::fake_at_unix(10);
        let b = a.clone();
        a.advance(Duration::from_millis(1_500));
        assert_eq!(b.unix_seconds(), 11);
        b.set_unix(3);
        assert_eq!(a.now(), UNIX_EPOCH + Duration::from_secs(3));
    }

    #[test]
    fn system_clock_follows_system_time() {
        let before = SystemTime::now();
        let read = WallClock::system().now();
        assert!(read >= before);
        assert!(read <= SystemTime::now());
        assert_eq!(format!("{:?}", WallClock::default()), "WallClock::System");
    }

    #[test]
    #[should_panic(expected = "cannot be moved")]
    fn system_clock_refuses_to_advance() {
        WallClock::system().advance(Duration::from_secs(1));
    }
}
