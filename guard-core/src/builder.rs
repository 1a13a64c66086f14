//! [`Guard`]: the canonical stack (in progress).

/// The assembled perimeter.
#[derive(Debug, Clone, Default)]
pub struct Guard {}

/// Builds a [`Guard`].
#[derive(Debug, Default)]
pub struct GuardBuilder {}
