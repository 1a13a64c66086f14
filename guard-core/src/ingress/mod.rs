//! The `ingress` layer (in progress).
