//! [`RedisReplayStore`]: a [`ReplayStore`] shared by every instance (feature `redis`).
//!
//! Each key is recorded with `SET <prefix><hex key> 1 NX PX <ttl>`: atomic (two instances seeing the
//! same signature at once cannot both win), one round trip, and the record expires by itself.
//! [`ReplayStore::seen`] is `EXISTS <prefix><hex key>`. One key per command, so it works on a
//! Redis Cluster with records on any slot.
//!
//! **Replication.** Redis replicates asynchronously: `SET NX` is acknowledged by the primary
//! before any replica has it. A record that reached a replica survives that replica's promotion
//! (tested against a real cluster), but if the primary dies in the few milliseconds between
//! acknowledging a record and streaming it, the promoted replica never saw it and that one
//! signature can be accepted once more (within its timestamp tolerance). The same holds for a
//! single primary whose replica a sentinel or the managed service promotes.
//!
//! [`require_replicas`](RedisReplayStore::require_replicas) (`[rate_limit]
//! replay_min_replicas` / `replay_replica_timeout_ms`) closes most of that window: each new record
//! is followed, in the same round trip and on the primary that owns the key, by
//! `WAIT <replicas> <timeout>`, and it counts only when that many replicas acknowledged it. Fewer
//! acknowledgements in time → the store answers an error, so the request is refused with 503
//! `guard.verify.unavailable` (fail closed, whatever the rate limiter's `failure_mode`), and the
//! record is deleted again (best effort) so the sender's retry is not taken for a replay. What
//! `WAIT` does **not** promise: the acknowledging replicas have the write in memory, not on disk;
//! a failover may still promote a replica that did not acknowledge (Redis elects the replica
//! with the largest replication offset, usually but not necessarily one that did); and a
//! primary restarted empty without persistence forgets every record. It costs one replica round
//! trip per signed request, and every signed request fails while fewer replicas are connected.
//! Requests also fail closed while the key's slot has no primary.
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
use crate::Unavailable;
use crate::replay::{ReplayFuture, ReplayStore};

/// Remembers keys in Redis with `SET NX PX`. Cheap to clone.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: RedisConnection,
    prefix: String,
    /// `WAIT` after each new record: how many replicas, and how long to wait for them.
    replicas: Option<(u32, Duration)>,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("conn", &self.conn)
            .field("prefix", &self.prefix)
            .field("replicas", &self.replicas)
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
            replicas: None,
        }
    }

    /// Counts a new record only once `replicas` replicas acknowledged it within `timeout`
    /// (`WAIT`, sent with the `SET` to the primary that owns the key); fewer → an error (503,
    /// fail closed) and the record is deleted again. `0` turns it off (the default). `timeout` is
    /// raised to at least 1 ms (`WAIT` with 0 would block) and should stay well inside the
    /// connection's budget. See the module docs for what `WAIT` does and does not guarantee.
    ///
    /// ```
    /// use std::time::Duration;
    /// use guard_core::rate_limit::{RedisConnection, RedisReplayStore};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    /// let store = RedisReplayStore::new(conn, "guard:replay:").require_replicas(1, Duration::from_millis(50));
    /// assert!(format!("{store:?}").contains("50ms"));
    /// ```
    pub fn require_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = (replicas > 0).then(|| (replicas, timeout.max(Duration::from_millis(1))));
        self
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
            let unavailable = |reason: String| Unavailable { reason };
            let Some((replicas, timeout)) = self.replicas else {
                let set: Option<String> = self
                    .conn
                    .run(|mut m| async move { set_nx(&k, ms).query_async(&mut m).await })
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                return Ok(set.is_some());
            };
            let wait_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let route = k.clone();
            let (set, acks) = self
                .conn
                .run(|mut m| async move {
                    let mut pipe = redis::pipe();
                    pipe.add_command(set_nx(&k, ms));
                    pipe.cmd("WAIT").arg(replicas).arg(wait_ms);
                    let mut replies = m.pipeline_on_primary_of(&k, pipe).await?.into_iter();
                    let (Some(set), Some(acks)) = (replies.next(), replies.next()) else {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "pipeline reply",
                        )));
                    };
                    let set: Option<String> = redis::from_redis_value(set.extract_error()?)?;
                    let acks: u64 = redis::from_redis_value(acks.extract_error()?)?;
                    Ok((set, acks))
                })
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            if set.is_none() {
                return Ok(false);
            }
            if acks < u64::from(replicas) {
                // Not admitted, so not used up: the retry must not look like a replay. If this
                // fails too, the retry is refused as one (fail closed) until the record expires.
                let _ = self
                    .conn
                    .run(|mut m| async move {
                        redis::cmd("DEL")
                            .arg(route)
                            .query_async::<u64>(&mut m)
                            .await
                    })
                    .await;
                return Err(unavailable(format!(
                    "{acks} of {replicas} replicas acknowledged the record within {timeout:?}"
                )));
            }
            Ok(true)
        })
    }

    fn seen<'a>(&'a self, key: &'a [u8]) -> ReplayFuture<'a> {
        Box::pin(async move {
            let k = self.redis_key(key);
            let n: u64 = self
                .conn
                .run(|mut m| async move { redis::cmd("EXISTS").arg(k).query_async(&mut m).await })
                .await
                .map_err(|e| Unavailable {
                    reason: e.to_string(),
                })?;
            Ok(n > 0)
        })
    }
}

/// `SET <key> 1 NX PX <ms>`: the record, written only when absent.
fn set_nx(key: &str, ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(1).arg("NX").arg("PX").arg(ms);
    cmd
}

const HEX: &[u8; 16] = b"0123456789abcdef";
