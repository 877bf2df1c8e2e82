//! Routes (stub: being written).
use std::time::Duration;

use super::LabelSet;

/// The route tree.
#[derive(Debug, Clone)]
pub struct Route {
    root: RouteNode,
}

/// One route.
#[derive(Debug, Clone)]
pub struct RouteNode {
    /// Receiver.
    pub receiver: String,
    /// group_wait.
    pub group_wait: Duration,
    /// group_interval.
    pub group_interval: Duration,
    /// repeat_interval.
    pub repeat_interval: Duration,
    /// mute_time_intervals.
    pub mute_time_intervals: Vec<String>,
    /// active_time_intervals.
    pub active_time_intervals: Vec<String>,
}

impl Route {
    /// Matching routes.
    pub fn match_routes(&self, _labels: &LabelSet) -> Vec<&RouteNode> {
        vec![&self.root]
    }
}

impl RouteNode {
    /// Group key.
    pub fn group_key(&self, _labels: &LabelSet) -> String {
        "{}:{}".into()
    }
    /// Group labels.
    pub fn group_labels(&self, _labels: &LabelSet) -> LabelSet {
        LabelSet::new()
    }
}

impl Route {
    /// amtool's output.
    pub fn format_routes_test(&self, _labels: &LabelSet) -> String {
        self.root.receiver.clone()
    }
}
