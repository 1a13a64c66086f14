//! The `audit` layer (in progress).
