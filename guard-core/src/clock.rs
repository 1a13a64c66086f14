//! Injected time. A wall clock for signature windows and token lifetimes; fakes for tests.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use guard_core::clock::{FakeWallClock, WallClock};
//!
//! let clock = FakeWallClock::at_unix(1_700_000_000);
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_700_000_005);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait WallClock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Seconds since the Unix epoch (0 if the clock is before it).
    fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct FakeWallClock {
    nanos: Arc<AtomicU64>,
}

impl FakeWallClock {
    /// A fake clock at `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(secs.saturating_mul(1_000_000_000))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.nanos
            .fetch_add(by.as_nanos().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    /// Sets the clock to `secs` seconds after the Unix epoch.
    pub fn set_unix(&self, secs: u64) {
        self.nanos
            .store(secs.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }
}

impl WallClock for FakeWallClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl<C: WallClock> WallClock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}
