//! [`RedisReplayStore`]: a [`ReplayStore`] shared by every instance (feature `redis`).
//!
//! Each key is recorded with `SET <prefix><hex key> 1 NX PX <ttl>`: atomic (two instances seeing the
//! same signature at once cannot both win), one round trip, and the record expires by itself.
//! [`ReplayStore::seen`] is `EXISTS <prefix><hex key>`. One key per command, so it works on a
//! Redis Cluster with records on any slot.
//!
//! **Failover.** Redis replicates asynchronously: `SET NX` is acknowledged by the primary before
//! any replica has it. A record that reached a replica survives that replica's promotion (tested
//! against a real cluster), but if the primary dies in the few milliseconds between
//! acknowledging a record and streaming it, the promoted replica never saw it and that one
//! signature can be accepted once more (within its timestamp tolerance). Closing that window
//! would take `WAIT 1 <ms>` after each `SET NX` (refusing with 503 when no replica acknowledged
//! in time), at the price of a replica round trip per signed request; this store does not issue
//! it. Requests keep failing closed (503 `guard.verify.unavailable`) while the slot has no
//! primary.
//!
//! ```no_run
//! use std::time::Duration;
//! use guard_core::rate_limit::{RedisConnection, RedisReplayStore};
//! use guard_core::replay::ReplayStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = RedisConnection::open("redis://cache.internal:6379", Duration::from_millis(50),
//!     Duration::from_secs(1))?;
//! let store = RedisReplayStore::new(conn, "guard:replay:orders:");
//! assert!(store.first_use(b"digest", Duration::from_secs(300)).await?);
//! assert!(!store.first_use(b"digest", Duration::from_secs(300)).await?);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use super::RedisConnection;
use crate::replay::{ReplayError, ReplayFuture, ReplayStore};

/// Remembers keys in Redis with `SET NX PX`. Cheap to clone.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: RedisConnection,
    prefix: String,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("conn", &self.conn)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisReplayStore {
    /// A store on `conn` whose keys start with `prefix` (e.g. `guard:replay:<function>:`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use guard_core::rate_limit::{RedisConnection, RedisReplayStore};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let _store = RedisReplayStore::new(conn, "guard:replay:");
    /// ```
    pub fn new(conn: RedisConnection, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    fn redis_key(&self, key: &[u8]) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len() * 2);
        k.push_str(&self.prefix);
        for b in key {
            k.push(char::from(HEX[usize::from(b >> 4)]));
            k.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        k
    }
}

impl ReplayStore for RedisReplayStore {
    fn first_use<'a>(&'a self, key: &'a [u8], ttl: Duration) -> ReplayFuture<'a> {
        Box::pin(async move {
            let k = self.redis_key(key);
            let ms = u64::try_from(ttl.as_micros().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1);
            let set: Option<String> = self
                .conn
                .run(|mut m| async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async(&mut m)
                        .await
                })
                .await
                .map_err(|e| ReplayError {
                    reason: e.to_string(),
                })?;
            Ok(set.is_some())
        })
    }

    fn seen<'a>(&'a self, key: &'a [u8]) -> ReplayFuture<'a> {
        Box::pin(async move {
            let k = self.redis_key(key);
            let n: u64 = self
                .conn
                .run(|mut m| async move { redis::cmd("EXISTS").arg(k).query_async(&mut m).await })
                .await
                .map_err(|e| ReplayError {
                    reason: e.to_string(),
                })?;
            Ok(n > 0)
        })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
