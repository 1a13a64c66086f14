//! Rate limiting against a real `redis-server` (started per test on a free loopback port) and the
//! in-memory backend: exactness under contention, sharing between instances, outages, spoofing,
//! a Redis that accepts and never answers, and the Redis replay store; `rediss://` against a
//! TLS-only server; a 3 + 3 Redis Cluster with a failover; `WAIT` for replicas after each replay
//! record (a primary with one replica, and the cluster); the time of one check.

mod cluster;
mod exactness;
mod hung;
mod keys;
mod latency;
mod outage;
mod replay;
mod replicas;
mod script;
mod support;
mod tls;
