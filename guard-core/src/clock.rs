//! Injected time: [`WallClock`], guard-secrets' clock (the lowest crate that needs one), for
//! signature windows, token lifetimes, rate limits and the secret cache; fakes for tests.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use guard_core::clock::WallClock;
//!
//! let clock = WallClock::fake_at_unix(1_700_000_000);
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_700_000_005);
//! assert_eq!(clock.unix_seconds(), 1_700_000_005);
//! ```

pub use guard_secrets::WallClock;
