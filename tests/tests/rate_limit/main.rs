//! Rate limiting against a real `redis-server` (started per test on a free loopback port) and the
//! in-memory backend: exactness under contention, sharing between instances, outages, spoofing,
//! a Redis that accepts and never answers, and the Redis replay store.

mod exactness;
mod hung;
mod keys;
mod outage;
mod replay;
mod script;
mod support;
