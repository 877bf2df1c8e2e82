//! dispatcher (stub: being written).
