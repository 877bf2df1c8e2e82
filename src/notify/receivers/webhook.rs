//! The `webhook` integration (stub: being written).

use serde::Deserialize;

use super::BuildError;
use crate::notify::{Notification, SendError};

/// `webhook_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether resolved alerts are sent.
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

impl WebhookConfig {
    /// Builds the integration.
    ///
    /// # Errors
    /// A field that is wrong.
    pub fn build(&self) -> Result<Webhook, BuildError> {
        Ok(Webhook {
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

/// A built webhook integration.
#[derive(Debug)]
pub struct Webhook {
    send_resolved: bool,
}

impl Webhook {
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
