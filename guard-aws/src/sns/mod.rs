//! Amazon SNS messages and their signatures.

mod message;

pub use message::SnsMessage;
