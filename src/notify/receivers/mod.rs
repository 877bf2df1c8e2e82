//! Receivers as Alertmanager configures them: a name and lists of integrations
//! (`email_configs`, `webhook_configs`, and our `alertmanager_configs`). Each
//! integration gets its own outbox worker, so a slow one never delays another.
//!
//! An integration kind is one file here plus one line in [`ReceiverConfig`] and
//! [`Integration`].

pub mod alertmanager;
pub mod email;
pub mod heartbeat;
pub mod webhook;

use std::sync::Arc;

use serde::Deserialize;

pub use crate::checks::BuildError;

use super::{Notification, SendError};

/// One entry of `alerting.receivers`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name that routes refer to. Example: `name: team-email`.
    pub name: String,
    /// Email integrations. Default none. Example: `email_configs: [{to: ops@example.org}]`.
    #[serde(default)]
    pub email_configs: Vec<email::EmailConfig>,
    /// Webhooks that receive Alertmanager's webhook JSON. Default none.
    /// Example: `webhook_configs: [{url: http://127.0.0.1:5001/hook}]`.
    #[serde(default)]
    pub webhook_configs: Vec<webhook::WebhookConfig>,
    /// Alertmanagers that receive the alerts (`POST /api/v2/alerts`). Default none.
    /// Example: `alertmanager_configs: [{urls: [http://10.0.0.5:9093]}]`.
    #[serde(default)]
    pub alertmanager_configs: Vec<alertmanager::AlertmanagerConfig>,
}

impl ReceiverConfig {
    /// Builds every integration; `global` holds the SMTP defaults of `alerting.global`.
    ///
    /// # Errors
    /// Every integration that does not build, with its field path below the receiver
    /// (`email_configs[0].smarthost`).
    pub fn build(&self, global: &email::SmtpGlobal) -> Result<Receiver, Vec<BuildError>> {
        let mut errors = Vec::new();
        let mut integrations = Vec::new();
        let mut push = |kind: &str, i: usize, r: Result<Integration, BuildError>| match r {
            Ok(int) => integrations.push(Arc::new(int)),
            Err(e) => errors.push(BuildError::new(
                format!("{kind}[{i}].{}", e.field).trim_end_matches('.'),
                e.message,
            )),
        };
        for (i, c) in self.email_configs.iter().enumerate() {
            push("email_configs", i, c.build(global).map(Integration::Email));
        }
        for (i, c) in self.webhook_configs.iter().enumerate() {
            push("webhook_configs", i, c.build().map(Integration::Webhook));
        }
        for (i, c) in self.alertmanager_configs.iter().enumerate() {
            push(
                "alertmanager_configs",
                i,
                c.build().map(Integration::Alertmanager),
            );
        }
        if errors.is_empty() {
            Ok(Receiver {
                name: self.name.clone(),
                integrations,
            })
        } else {
            Err(errors)
        }
    }
}

/// A built receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its name.
    pub name: String,
    /// Its integrations, in config order: emails, webhooks, Alertmanagers.
    pub integrations: Vec<Arc<Integration>>,
}

impl Receiver {
    /// The key of integration `i`, `receiver/kind/index` (outbox rows and logs use it).
    pub fn key(&self, i: usize) -> String {
        let kind = self.integrations.get(i).map_or("none", |x| x.kind());
        let nth = self.integrations[..i.min(self.integrations.len())]
            .iter()
            .filter(|x| x.kind() == kind)
            .count();
        format!("{}/{kind}/{nth}", self.name)
    }
}

/// One built integration.
#[derive(Debug)]
pub enum Integration {
    /// SMTP.
    Email(email::Email),
    /// Alertmanager's webhook JSON.
    Webhook(webhook::Webhook),
    /// `POST /api/v2/alerts`.
    Alertmanager(alertmanager::Alertmanager),
}

impl Integration {
    /// `email`, `webhook` or `alertmanager`.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Email(_) => "email",
            Integration::Webhook(_) => "webhook",
            Integration::Alertmanager(_) => "alertmanager",
        }
    }

    /// Whether resolved alerts are sent.
    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Email(x) => x.send_resolved(),
            Integration::Webhook(x) => x.send_resolved(),
            Integration::Alertmanager(x) => x.send_resolved(),
        }
    }

    /// `Err(why)` when the integration cannot send because something it needs is not set
    /// (an email whose SMTP server comes from an unset variable). Its notifications are
    /// then logged, not queued.
    pub fn configured(&self) -> Result<(), String> {
        match self {
            Integration::Email(x) => x.configured(),
            Integration::Webhook(_) | Integration::Alertmanager(_) => Ok(()),
        }
    }

    /// Sends one notification.
    ///
    /// # Errors
    /// Why it was not accepted.
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        match self {
            Integration::Email(x) => x.send(n).await,
            Integration::Webhook(x) => x.send(n).await,
            Integration::Alertmanager(x) => x.send(n).await,
        }
    }
}
