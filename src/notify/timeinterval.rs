//! Time intervals (stub: being written).

/// A named time interval.
#[derive(Debug, Clone)]
pub struct TimeInterval;

impl TimeInterval {
    /// True when `t` is inside.
    pub fn contains(&self, _t: chrono::DateTime<chrono::Utc>) -> bool {
        false
    }
}
