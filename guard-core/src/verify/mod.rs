//! The `verify` layer (in progress).
