//! timeinterval (stub: being written).
