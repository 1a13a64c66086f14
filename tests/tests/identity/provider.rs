//! The real OpenID Provider.
