//! route (stub: being written).
