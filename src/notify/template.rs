//! Email templates (stub: being written). The real module renders a [`Notification`]
//! with Go `text/template` syntax (the data model of Alertmanager's templates).

use super::Notification;

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// The subject, text and HTML templates of one email integration.
#[derive(Debug, Clone)]
pub struct EmailTemplates {
    _private: (),
}

impl EmailTemplates {
    /// Parses the given templates; `None` takes the default one.
    ///
    /// # Errors
    /// The first template that does not parse, with its name.
    pub fn new(
        _subject: Option<&str>,
        _text: Option<&str>,
        _html: Option<&str>,
    ) -> Result<Self, String> {
        Ok(EmailTemplates { _private: () })
    }

    /// Renders one notification.
    ///
    /// # Errors
    /// A template that fails to expand.
    pub fn render(&self, n: &Notification) -> Result<RenderedEmail, String> {
        let names: Vec<&str> = n
            .alerts
            .iter()
            .filter_map(|a| a.labels.get("alertname").map(String::as_str))
            .collect();
        Ok(RenderedEmail {
            subject: format!("[{}] {}", n.status().to_uppercase(), names.join(", ")),
            text: format!("{} alerts", n.alerts.len()),
            html: format!("<p>{} alerts</p>", n.alerts.len()),
        })
    }
}
