//! harena-exporter: probes, a sample store, `/metrics`, rules and notifications.
//!
//! Data flows one way:
//!
//! ```text
//! config ──► scheduler ──► checks ──► store ──► /metrics, status page
//!                                       └────► rules ──► notify ──► receivers
//! ```
//!
//! A module uses only modules to its left, plus `model` and `config`.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod app;
pub mod checks;
pub mod cli;
pub mod clients;
pub mod config;
pub mod demo;
pub mod history;
pub mod http;
pub mod model;
pub mod net;
pub mod notify;
pub mod rules;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod telemetry;
