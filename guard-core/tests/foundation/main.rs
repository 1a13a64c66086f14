//! Foundation behaviour: every rejection code of ingress and validation, the audit record, policy
//! loading, and the schema engine's safety properties.

mod audit;
mod contract;
mod rejections;
mod schema;
mod support;
