//! Email templates: a [`Notification`] rendered through Go `text/template` syntax over
//! Alertmanager's template data, so that templates written for Alertmanager's emails read
//! the same fields here.
//!
//! Dot is Alertmanager's `template.Data`:
//!
//! | field | value |
//! |---|---|
//! | `.Status` | `firing` when any alert fires, else `resolved` |
//! | `.Receiver` | the receiver's name (not regex-quoted, unlike Alertmanager's) |
//! | `.Alerts` | the alerts, firing first; `.Alerts.Firing`, `.Alerts.Resolved`, and our `.Alerts.Names` (the distinct `alertname`s, in order) |
//! | `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations` | `KV` maps, with `.SortedPairs`, `.Names`, `.Values`, `.Remove (stringSlice "a")` |
//! | `.ExternalURL` | the exporter's external URL (its status page) |
//!
//! Each alert has `.Status .Labels .Annotations .StartsAt .EndsAt .GeneratorURL
//! .Fingerprint` as in Alertmanager (`.EndsAt` of a firing alert is Go's zero time), plus
//! the exporter's `.Value` (float), `.Reason` (the check's failure reason) and `.Detail`
//! (the check's last detail). Functions: see [`crate::rules::template`] ("Notification
//! templates"); `since` counts to the notification's creation time, so a retried email is
//! the same email.
//!
//! The subject is one line: the lines of its expansion are trimmed and joined with
//! spaces. The HTML body escapes every printed value unless it goes through `safeHtml`.
//! The defaults are `src/notify/templates/email.{subject,txt,html}.tmpl`.

use super::{Notification, NotifyAlert};
use crate::rules::template::{GO_ZERO_TIME_MS, Mode, Template, TplList, TplStruct, TplValue};

/// The default subject template.
pub const DEFAULT_SUBJECT: &str = include_str!("templates/email.subject.tmpl");
/// The default plain-text body template.
pub const DEFAULT_TEXT: &str = include_str!("templates/email.txt.tmpl");
/// The default HTML body template.
pub const DEFAULT_HTML: &str = include_str!("templates/email.html.tmpl");

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
    subject: Template,
    text: Template,
    html: Template,
}

impl EmailTemplates {
    /// Parses the given templates; `None` takes the default one. The templates are named
    /// `subject`, `text` and `html` in error messages.
    ///
    /// # Errors
    /// The first template that does not parse (a syntax error, an unknown function or
    /// variable), with its name: `template: html:3: function "foo" not defined`.
    pub fn new(
        subject: Option<&str>,
        text: Option<&str>,
        html: Option<&str>,
    ) -> Result<Self, String> {
        let parse = |name: &str, text: Option<&str>, default: &str, mode: Mode| {
            Template::parse_with(name, text.unwrap_or(default), mode).map_err(|e| e.0)
        };
        Ok(EmailTemplates {
            subject: parse("subject", subject, DEFAULT_SUBJECT, Mode::Text)?,
            text: parse("text", text, DEFAULT_TEXT, Mode::Text)?,
            html: parse("html", html, DEFAULT_HTML, Mode::Html)?,
        })
    }

    /// Renders one notification.
    ///
    /// # Errors
    /// A template that fails to expand, in Go's words, which name it:
    /// `template: text:4:7: executing "text" at <.Nope>: can't evaluate field Nope in type
    /// template.Alert`.
    pub fn render(&self, n: &Notification) -> Result<RenderedEmail, String> {
        let data = notification_data(n);
        let now = n.created_ms;
        let expand = |t: &Template| t.expand_value(&data, now).map_err(|e| e.0);
        Ok(RenderedEmail {
            subject: one_line(&expand(&self.subject)?),
            text: expand(&self.text)?,
            html: expand(&self.html)?,
        })
    }
}

/// The lines of `s`, trimmed, without the empty ones, joined with single spaces: a
/// subject never carries a line break into the header.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Alertmanager's template data for a notification (the dot of the email templates).
pub fn notification_data(n: &Notification) -> TplValue {
    let alerts: Vec<&NotifyAlert> = n.alerts.iter().collect();
    TplValue::Struct(TplStruct {
        type_name: "*template.Data".into(),
        fields: vec![
            ("Receiver".into(), TplValue::str(&n.receiver)),
            ("Status".into(), TplValue::str(n.status())),
            ("Alerts".into(), alerts_value(&alerts, 0)),
            ("GroupLabels".into(), TplValue::Map(n.group_labels.clone())),
            ("CommonLabels".into(), TplValue::Map(n.common_labels())),
            (
                "CommonAnnotations".into(),
                TplValue::Map(n.common_annotations()),
            ),
            ("ExternalURL".into(), TplValue::str(&n.external_url)),
        ],
    })
}

/// Alertmanager's `Alerts`: the list, with `.Firing` and `.Resolved` (two levels deep:
/// `.Alerts.Firing.Resolved` works, a third level is not built) and our `.Names`.
fn alerts_value(alerts: &[&NotifyAlert], depth: u8) -> TplValue {
    let mut names: Vec<&str> = Vec::new();
    for a in alerts {
        let name = a.labels.get("alertname").map_or("", String::as_str);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut fields = Vec::new();
    if depth < 2 {
        let (firing, resolved): (Vec<&NotifyAlert>, Vec<&NotifyAlert>) =
            alerts.iter().partition(|a| !a.resolved());
        fields.push(("Firing".to_string(), alerts_value(&firing, depth + 1)));
        fields.push(("Resolved".to_string(), alerts_value(&resolved, depth + 1)));
    }
    fields.push(("Names".to_string(), TplValue::strings(names)));
    TplValue::List(TplList {
        type_name: "template.Alerts".into(),
        items: alerts.iter().map(|a| alert_value(a)).collect(),
        fields,
    })
}

/// Alertmanager's `template.Alert`, plus `.Value`, `.Reason` and `.Detail`.
fn alert_value(a: &NotifyAlert) -> TplValue {
    TplValue::Struct(TplStruct {
        type_name: "template.Alert".into(),
        fields: vec![
            ("Status".into(), TplValue::str(a.status())),
            ("Labels".into(), TplValue::Map(a.labels.clone())),
            ("Annotations".into(), TplValue::Map(a.annotations.clone())),
            ("StartsAt".into(), TplValue::Time(a.starts_at_ms)),
            (
                "EndsAt".into(),
                TplValue::Time(a.ends_at_ms.unwrap_or(GO_ZERO_TIME_MS)),
            ),
            ("GeneratorURL".into(), TplValue::str(&a.generator_url)),
            ("Fingerprint".into(), TplValue::str(&a.fingerprint)),
            ("Value".into(), TplValue::Float(a.value)),
            ("Reason".into(), TplValue::str(&a.reason)),
            ("Detail".into(), TplValue::str(&a.detail)),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{LabelSet, fingerprint};

    /// 2024-05-01 10:00:00 UTC.
    const T0: i64 = 1_714_557_600_000;
    const MIN: i64 = 60_000;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(
        name: &str,
        check: &str,
        reason: &str,
        starts: i64,
        ends: Option<i64>,
        annotations: &[(&str, &str)],
    ) -> NotifyAlert {
        let labels = labels(&[
            ("alertname", name),
            ("check", check),
            ("env", "harena"),
            ("severity", "critical"),
        ]);
        NotifyAlert {
            fingerprint: fingerprint(&labels),
            labels,
            annotations: self::labels(annotations),
            starts_at_ms: starts,
            ends_at_ms: ends,
            generator_url: format!("http://127.0.0.1:9100/#check-{check}"),
            value: 1.0,
            reason: reason.into(),
            detail: format!("connect to {check}: connection refused"),
        }
    }

    fn notification(alerts: Vec<NotifyAlert>) -> Notification {
        Notification {
            id: "n1".into(),
            receiver: "team-email".into(),
            group_key: "{}:{env=\"harena\"}".into(),
            group_labels: labels(&[("env", "harena")]),
            alerts,
            external_url: "http://127.0.0.1:9100".into(),
            created_ms: T0 + 12 * MIN,
            report: None,
        }
    }

    fn firing() -> Notification {
        notification(vec![
            alert(
                "PostgresDown",
                "postgres",
                "refused",
                T0,
                None,
                &[
                    ("summary", "PostgreSQL postgres is down (refused)"),
                    ("description", "The exporter cannot query PostgreSQL."),
                    ("runbook", "docs/alerts.md#postgresdown"),
                ],
            ),
            alert(
                "ServiceDown",
                "user_service",
                "timeout",
                T0 + 2 * MIN,
                None,
                &[(
                    "runbook_url",
                    "https://wiki.example.org/runbooks/servicedown?a=1&b=2",
                )],
            ),
        ])
    }

    fn render(t: &EmailTemplates, n: &Notification) -> RenderedEmail {
        t.render(n).unwrap_or_else(|e| panic!("render: {e}"))
    }

    #[test]
    fn default_templates_on_two_firing_alerts() {
        let t = EmailTemplates::new(None, None, None).expect("defaults parse");
        let r = render(&t, &firing());
        assert_eq!(r.subject, "[FIRING:2] PostgresDown, ServiceDown (harena)");
        let want_text = "\
2 alerts firing

------------------------------------------------------------------------
[FIRING] PostgresDown (critical)
PostgreSQL postgres is down (refused)

  Check:     postgres
  Reason:    refused
  Detail:    connect to postgres: connection refused
  Value:     1
  Since:     2024-05-01 10:00:00 UTC (for 12m 0s)
  Runbook:   docs/alerts.md#postgresdown
  Status:    http://127.0.0.1:9100/#check-postgres
  Labels:    alertname=PostgresDown check=postgres env=harena severity=critical

The exporter cannot query PostgreSQL.

------------------------------------------------------------------------
[FIRING] ServiceDown (critical)

  Check:     user_service
  Reason:    timeout
  Detail:    connect to user_service: connection refused
  Value:     1
  Since:     2024-05-01 10:02:00 UTC (for 10m 0s)
  Runbook:   https://wiki.example.org/runbooks/servicedown?a=1&b=2
  Status:    http://127.0.0.1:9100/#check-user_service
  Labels:    alertname=ServiceDown check=user_service env=harena severity=critical

------------------------------------------------------------------------
Status page: http://127.0.0.1:9100
Sent by harena-exporter to receiver team-email.
";
        assert_eq!(r.text, want_text, "text body:\n{}", r.text);
        let html = &r.html;
        for want in [
            "2 alerts firing: PostgresDown, ServiceDown</td>",
            ">FIRING</span> PostgresDown",
            "PostgreSQL postgres is down (refused)",
            ">refused</td>",
            "connect to postgres: connection refused",
            "2024-05-01 10:00:00 UTC (for 12m 0s)",
            // A relative runbook is text, an http one a link (with `&` escaped).
            ">docs/alerts.md#postgresdown</td>",
            "<a href=\"https://wiki.example.org/runbooks/servicedown?a=1&amp;b=2\"",
            "<a href=\"http://127.0.0.1:9100/#check-user_service\"",
            "alertname=ServiceDown check=user_service env=harena severity=critical",
            "<a href=\"http://127.0.0.1:9100\" style=\"color:#1a5fb4;\">Status page</a>",
        ] {
            assert!(html.contains(want), "html lacks {want:?}:\n{html}");
        }
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(!html.contains("Resolved</td>"), "{html}");
        // No external resources: no images, style sheets or scripts.
        for banned in ["<img", "<link", "<script", "<style", "src="] {
            assert!(!html.contains(banned), "html has {banned:?}");
        }
    }

    #[test]
    fn default_templates_on_a_resolved_alert() {
        let t = EmailTemplates::new(None, None, None).expect("defaults parse");
        let n = notification(vec![alert(
            "PostgresDown",
            "postgres",
            "refused",
            T0,
            Some(T0 + 14 * MIN + 30_000),
            &[("summary", "PostgreSQL postgres is down (refused)")],
        )]);
        let r = render(&t, &n);
        assert_eq!(r.subject, "[RESOLVED] PostgresDown (harena)");
        assert!(r.text.starts_with("1 alert resolved\n"), "{}", r.text);
        for want in [
            "[RESOLVED] PostgresDown (critical)\n",
            "  Since:     2024-05-01 10:00:00 UTC\n",
            "  Resolved:  2024-05-01 10:14:30 UTC (after 14m 30s)\n",
        ] {
            assert!(r.text.contains(want), "text lacks {want:?}:\n{}", r.text);
        }
        assert!(!r.text.contains("(for "), "{}", r.text);
        assert!(
            r.html.contains("1 alert resolved: PostgresDown</td>"),
            "{}",
            r.html
        );
        assert!(
            r.html
                .contains(">2024-05-01 10:14:30 UTC (after 14m 30s)</td>"),
            "{}",
            r.html
        );
        assert!(r.html.contains("#2e7d32"), "resolved colour");
    }

    #[test]
    fn a_mixed_notification_counts_firing_alerts_only() {
        let t = EmailTemplates::new(None, None, None).expect("defaults parse");
        let mut n = firing();
        n.alerts[1].ends_at_ms = Some(T0 + 11 * MIN);
        n.group_labels = LabelSet::new();
        let r = render(&t, &n);
        assert_eq!(r.subject, "[FIRING:1] PostgresDown");
        assert!(
            r.text.starts_with("1 alert firing, 1 resolved\n"),
            "{}",
            r.text
        );
    }

    #[test]
    fn user_templates_override_the_defaults() {
        let subject = "{{ .Status }}:\n{{ range .Alerts }}{{ .Labels.check }} {{ end }}";
        let text = concat!(
            "{{ range $i, $a := .Alerts.Firing }}",
            "{{ if $i }}; {{ end }}{{ $i }}={{ $a.Labels.alertname }}/{{ $a.Reason }}",
            "{{ if eq $a.Labels.check \"postgres\" }}!{{ end }}",
            "{{ end }}|{{ len .Alerts.Resolved }}|{{ .CommonLabels.env }}",
            "|{{ .CommonLabels.Remove .GroupLabels.Names }}",
            "|{{ (index .Alerts 1).StartsAt.Format \"15:04\" }}",
            "|{{ .CommonAnnotations.summary }}|{{ .GroupLabels.SortedPairs.Values | join \",\" }}",
        );
        let html =
            "<b>{{ .Receiver }}</b>{{ with .ExternalURL }} <a href=\"{{ . }}\">x</a>{{ end }}";
        let t = EmailTemplates::new(Some(subject), Some(text), Some(html)).expect("parse");
        let r = render(&t, &firing());
        assert_eq!(r.subject, "firing: postgres user_service");
        assert_eq!(
            r.text,
            "0=PostgresDown/refused!; 1=ServiceDown/timeout|0|harena\
             |map[severity:critical]|10:02||harena"
        );
        assert_eq!(
            r.html,
            "<b>team-email</b> <a href=\"http://127.0.0.1:9100\">x</a>"
        );
    }

    #[test]
    fn html_escapes_values_but_not_safe_html() {
        let mut n = firing();
        n.alerts[0]
            .labels
            .insert("check".into(), "<script>alert('x')</script>".into());
        let t = EmailTemplates::new(None, None, None).expect("defaults parse");
        let r = render(&t, &n);
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(
            r.html
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            "{}",
            r.html
        );
        // The plain-text body is not HTML: it keeps the value as it is.
        assert!(
            r.text.contains("Check:     <script>alert('x')</script>"),
            "{}",
            r.text
        );
        let t = EmailTemplates::new(
            None,
            None,
            Some("{{ .Receiver }}{{ \"<i>\" }}{{ safeHtml \"<b>ok</b>\" }}{{ html \"<u>\" }}"),
        )
        .expect("parse");
        n.receiver = "a&b".into();
        assert_eq!(render(&t, &n).html, "a&amp;b&lt;i&gt;<b>ok</b>&lt;u&gt;");
    }

    #[test]
    fn errors_name_the_template() {
        for (i, name) in ["subject", "text", "html"].into_iter().enumerate() {
            let mut texts = [None, None, None];
            texts[i] = Some("ok\n{{ range .Alerts }}{{ .Nope }}{{ end }}");
            let t = EmailTemplates::new(texts[0], texts[1], texts[2]).expect("parse");
            let err = t.render(&firing()).expect_err("unknown field");
            assert_eq!(
                err,
                format!(
                    "template: {name}:2:22: executing \"{name}\" at <.Nope>: \
                     can't evaluate field Nope in type template.Alert"
                )
            );
            texts[i] = Some("{{ if .Status }}");
            let err = EmailTemplates::new(texts[0], texts[1], texts[2]).expect_err("syntax");
            assert_eq!(err, format!("template: {name}:1: unexpected EOF"));
        }
    }

    #[test]
    fn unknown_functions_fail_at_new() {
        let err = EmailTemplates::new(None, Some("{{ .Status | shout }}"), None)
            .expect_err("unknown function");
        assert_eq!(err, "template: text:1: function \"shout\" not defined");
        // Prometheus's rule-only functions are not notification functions.
        let err =
            EmailTemplates::new(Some("{{ externalURL }}"), None, None).expect_err("rule function");
        assert_eq!(
            err,
            "template: subject:1: function \"externalURL\" not defined"
        );
        let err = EmailTemplates::new(None, None, Some("{{ .StartsAt | tz \"Europe/Paris\" }}"))
            .expect_err("tz");
        assert!(
            err.starts_with("template: html:1: function \"tz\" is not supported"),
            "{err}"
        );
        let err = EmailTemplates::new(None, None, Some("{{ define \"x\" }}{{ end }}"))
            .expect_err("define");
        assert_eq!(
            err,
            "template: html:1: {{define}} is not supported in notification templates"
        );
    }

    #[test]
    fn subject_is_one_line() {
        assert_eq!(one_line("  a\n\n  b \r\n c  "), "a b c");
        let t = EmailTemplates::new(Some("{{ .Receiver }}"), None, None).expect("parse");
        let mut n = firing();
        n.receiver = "x\r\nBcc: evil@example.org".into();
        assert_eq!(render(&t, &n).subject, "x Bcc: evil@example.org");
    }
}
