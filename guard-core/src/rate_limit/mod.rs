//! The `rate_limit` layer (in progress).
