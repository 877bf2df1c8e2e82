//! template (stub: being written).
