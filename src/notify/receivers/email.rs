//! The `email` integration (stub: being written).

use serde::Deserialize;

use super::BuildError;
use crate::notify::{Notification, SendError};

/// `email_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Whether resolved alerts are sent.
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

impl EmailConfig {
    /// Builds the integration.
    ///
    /// # Errors
    /// A field that is wrong.
    pub fn build(&self, _global: &SmtpGlobal) -> Result<Email, BuildError> {
        Ok(Email {
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

/// A built email integration.
#[derive(Debug)]
pub struct Email {
    send_resolved: bool,
}

impl Email {
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

impl Email {
    /// `Err(why)` when the SMTP server or recipients are not set.
    pub fn configured(&self) -> Result<(), String> {
        Err("email is not implemented".into())
    }
}

/// `alerting.global`: SMTP defaults for every `email_configs` entry, as in Alertmanager's
/// `global` section (stub: being written).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpGlobal {
    /// Default SMTP server. Example: `smtp_smarthost: smtp.example.org:587`.
    #[serde(default)]
    pub smtp_smarthost: Option<String>,
}

impl Email {
    /// Sends a test email.
    ///
    /// # Errors
    /// Why it failed.
    pub async fn send_test(&self, _to: Option<&str>) -> Result<String, SendError> {
        Err(SendError::retry("internal", "not implemented"))
    }
}
