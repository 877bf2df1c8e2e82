//! outbox (stub: being written).
