//! silences (stub: being written).
