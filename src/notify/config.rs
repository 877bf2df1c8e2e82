//! `alerting:` (stub: being written).
use std::collections::BTreeMap;

use super::matchers::Matcher;
use super::receivers::Receiver;

/// `alerting:`.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    /// Route tree.
    pub route: super::route::Route,
    /// Receivers.
    pub receivers: Vec<Receiver>,
    /// Inhibit rules.
    pub inhibit_rules: Vec<InhibitRule>,
    /// Time intervals.
    pub time_intervals: BTreeMap<String, super::timeinterval::TimeInterval>,
    /// Daily report.
    pub daily_report: Option<DailyReportConfig>,
}

/// Daily report.
#[derive(Debug, Clone)]
pub struct DailyReportConfig {
    /// Receiver.
    pub receiver: String,
    /// HH:MM.
    pub at: String,
    /// IANA zone.
    pub location: Option<String>,
}

/// An inhibit rule.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// Source.
    pub source_matchers: Vec<Matcher>,
    /// Target.
    pub target_matchers: Vec<Matcher>,
    /// Equal labels.
    pub equal: Vec<String>,
}

/// Parses `alerting:` (stub).
pub fn parse(
    _cx: &mut crate::config::yaml::Context,
    _node: &crate::config::yaml::Node,
    _path: &str,
) -> Option<AlertingConfig> {
    None
}
