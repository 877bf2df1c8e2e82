//! The heartbeat (stub: being written).
