//! The `alertmanager` integration (stub: being written).

use serde::Deserialize;

use super::BuildError;
use crate::notify::{Notification, SendError};

/// `alertmanager_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Whether resolved alerts are sent.
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

impl AlertmanagerConfig {
    /// Builds the integration.
    ///
    /// # Errors
    /// A field that is wrong.
    pub fn build(&self) -> Result<Alertmanager, BuildError> {
        Ok(Alertmanager {
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

/// A built alertmanager integration.
#[derive(Debug)]
pub struct Alertmanager {
    send_resolved: bool,
}

impl Alertmanager {
    /// Whether resolved alerts are sent.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// Sends one notification.
    ///
    /// # Errors
    /// Why it was not accepted.
    pub async fn send(&self, _n: &Notification) -> Result<(), SendError> {
        Err(SendError::retry("internal", "not implemented"))
    }
}
