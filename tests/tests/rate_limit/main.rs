//! Rate limiting against a real `redis-server` (started per test on a free loopback port) and the
//! in-memory backend: exactness under contention, sharing between instances, outages, spoofing,
//! a Redis that accepts and never answers, and the Redis replay store; `rediss://` against a
//! TLS-only server; a 3 + 3 Redis Cluster with a failover; the time of one check.

mod cluster;
mod exactness;
mod hung;
mod keys;
mod latency;
mod outage;
mod replay;
mod script;
mod support;
mod tls;
