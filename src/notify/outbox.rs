//! Outbox (stub: being written).
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Notification, SendError};

/// A receiver integration.
pub trait Deliver: Send + Sync + 'static {
    /// Sends.
    fn send<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;
}

impl Deliver for super::receivers::Integration {
    fn send<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(super::receivers::Integration::send(self, n))
    }
}

/// Creates the table.
pub fn init_schema(_c: &rusqlite::Connection) {}

/// Inserts a row.
///
/// # Errors
/// SQLite.
pub fn insert(_c: &rusqlite::Connection, _key: &str, _n: &Notification) -> rusqlite::Result<i64> {
    Ok(0)
}

/// The outbox.
#[derive(Default)]
pub struct Outbox;

impl Outbox {
    /// Sets integrations.
    pub fn set_integrations(&self, _map: BTreeMap<String, Arc<dyn Deliver>>) {}
    /// Wakes workers.
    pub fn wake(&self) {}
}

impl Outbox {
    /// An outbox.
    pub fn new(_state: Arc<crate::state::State>) -> Self {
        Outbox
    }
    /// Metrics.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }
    /// Stops the workers.
    pub async fn shutdown(&self) {}
}

/// A pending notification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingInfo {
    /// Row id.
    pub id: i64,
}

impl Outbox {
    /// Pending rows.
    pub fn pending(&self) -> Vec<PendingInfo> {
        Vec::new()
    }
}
