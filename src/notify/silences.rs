//! Silences (stub: being written).
use super::LabelSet;

/// Silences.
#[derive(Debug, Default)]
pub struct Silences;

impl Silences {
    /// Active silences matching.
    pub fn silenced_by(&self, _labels: &LabelSet, _now_ms: i64) -> Vec<String> {
        Vec::new()
    }
    /// Forgets old silences.
    pub fn gc(&self, _now_ms: i64) {}
}

impl Silences {
    /// Loads the silences.
    pub fn load(_state: std::sync::Arc<crate::state::State>) -> Self {
        Silences
    }
}
