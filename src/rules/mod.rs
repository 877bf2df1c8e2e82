//! Rules: Prometheus rule files evaluated by the exporter itself.
//!
//! ```text
//! rule files ─► files (load, validate: positions, group and rule names)
//!                 │
//!                 ▼
//! store ◄──► group (one loop per group: promql over the store, recording results and
//!                 │  ALERTS written back, alert lifecycle in alerting, templates)
//!                 ├─► persist (alert states in the state file)
//!                 └─► RuleEngine::active_alerts() ─► notifier, web
//! ```
//!
//! - [`files`]: rule files in Prometheus's format, as strict as `promtool check rules`;
//! - [`promql`]: the PromQL subset the evaluator implements (refused constructs named);
//! - [`template`]: label and annotation templates (`$labels`, `$value`, `humanize`, …);
//! - [`alerting`]: inactive → pending → firing → resolved, `for`, `keep_firing_for`;
//! - [`group`]: evaluation of a group, the per-group loops ([`RuleEngine`]);
//! - [`persist`]: alert states across restarts;
//! - [`unittest`]: `test-rules`, promtool's rule unit tests;
//! - [`promqltest`]: `promql-test`, Prometheus's PromQL test scripts;
//! - [`storage`]: what expressions read (the store, or memory in tests).
//!
//! Semantics are Prometheus 2.42's.

pub mod alerting;
pub mod files;
pub mod group;
pub mod persist;
pub mod promql;
pub mod promqltest;
pub mod storage;
pub mod template;
pub mod unittest;

pub use alerting::{Alert, AlertState};
pub use files::{Groups, RuleLoadError};
pub use group::{AlertsView, EngineOptions, RuleEngine};
