//! Rules: PromQL evaluation over the store.

pub mod promql;
pub mod promqltest;
pub mod storage;
