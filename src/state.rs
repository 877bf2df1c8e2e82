//! The SQLite file under `--storage.path`: state that must survive a restart.
//!
//! Today: a key-value table that checks use for facts they must remember across
//! restarts (the tunnel's last hostname). Alert states, the outbox, silences and probe
//! history join it as those features land. Calls are short and run on the blocking
//! pool, never on a runtime worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

/// Errors opening or using the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The folder could not be created.
    #[error("create storage folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("open state file {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
}

/// The state file.
#[derive(Debug)]
pub struct State {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// File name inside `--storage.path`.
pub const FILE_NAME: &str = "harena-exporter.db";

impl State {
    /// Opens (or creates) `dir/harena-exporter.db`.
    ///
    /// # Errors
    /// The folder or the file cannot be used.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|source| StateError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, path)
    }

    /// A state that lives in memory only (for one-shot commands and tests).
    ///
    /// # Errors
    /// SQLite cannot start.
    pub fn in_memory() -> Result<Self, StateError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StateError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, StateError> {
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL);",
        )
        .map_err(err)?;
        Ok(State {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the connection (blocking: call it from the blocking pool). Other
    /// modules keep their own tables in this file and create them with
    /// `CREATE TABLE IF NOT EXISTS` on first use.
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn())
    }

    /// Reads a value (blocking; use [`State::get`] from async code).
    pub fn get_blocking(&self, key: &str) -> Option<String> {
        let res = self
            .conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
                r.get::<_, String>(0)
            })
            .optional();
        match res {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, key, "read state");
                None
            }
        }
    }

    /// Writes a value (blocking; use [`State::set`] from async code).
    pub fn set_blocking(&self, key: &str, value: &str) {
        let now = crate::scheduler::now_ms();
        if let Err(e) = self.conn().execute(
            "INSERT INTO kv (key, value, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
            params![key, value, now],
        ) {
            tracing::warn!(error = %e, key, "write state");
        }
    }

    /// Reads a value on the blocking pool.
    pub async fn get(self: &Arc<Self>, key: &str) -> Option<String> {
        let me = Arc::clone(self);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || me.get_blocking(&key))
            .await
            .ok()
            .flatten()
    }

    /// Writes a value on the blocking pool.
    pub async fn set(self: &Arc<Self>, key: &str, value: &str) {
        let me = Arc::clone(self);
        let (key, value) = (key.to_string(), value.to_string());
        let _ = tokio::task::spawn_blocking(move || me.set_blocking(&key, &value)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = State::open(dir.path()).expect("open");
            assert_eq!(s.get_blocking("a"), None);
            s.set_blocking("a", "one");
            s.set_blocking("a", "two");
        }
        let s = State::open(dir.path()).expect("reopen");
        assert_eq!(s.get_blocking("a").as_deref(), Some("two"));
    }
}
