//! # guard-aws
//!
//! The AWS Lambda adapter for Guard: it decodes every common Lambda event into Guard's neutral
//! `http::Request<Bytes>` ([`decode`]), runs it through a Guard stack, and encodes the answer back
//! into what the trigger expects ([`encode`]): API Gateway / ALB / Function URL responses, partial
//! batch failures for SQS, Kinesis and DynamoDB Streams, structured errors for direct invocations.
//! It also verifies SNS message signatures ([`sns`]).

pub mod decode;
pub mod event;
pub mod sns;
