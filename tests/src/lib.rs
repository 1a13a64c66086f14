//! Support for Guard's cross-crate tests: real servers (redis-server, moto, scripted HTTP) started on free loopback
//! ports by the test itself and stopped by PID when dropped.
//!
//! The tools are installed by `scripts/setup-tools.sh` (run by the README's test command); a missing
//! tool is a test failure with a clear message, never a skip.

pub mod http;
pub mod lambda;
pub mod moto;
pub mod redis;
pub mod server;
