//! The heartbeat (stub: being written).

/// Placeholder until the heartbeat lands.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct HeartbeatConfig {
    /// Name.
    pub name: String,
}
