//! The desired state: which apps the node runs, stored durably in `<state-dir>/node.db`
//! (SQLite, WAL, synchronous commits). A deploy's record is written in one transaction
//! after its blobs are in the content store, so a crash leaves the old version or the new
//! one, never half of either.

use crate::NodeError;
use crate::api::{AppLimitsSpec, DeploySource};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the node keeps of one deployed app: enough to load it again from the content
/// store alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppRecord {
    /// The reference its manifest is recorded under in the content store.
    pub reference: String,
    /// `sha256:…` of its manifest.
    pub digest: String,
    /// Where it came from, for people.
    pub origin: String,
    /// The source as deployed (a registry reference is pulled again only on redeploy).
    pub source: DeploySource,
    pub hosts: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub runtime_config: Option<String>,
    #[serde(default)]
    pub limits: AppLimitsSpec,
    /// Trigger types, so the node knows without loading which apps must stay loaded.
    #[serde(default)]
    pub trigger_types: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub app_version: Option<String>,
}

/// One stored app with its deploy count and time.
#[derive(Debug, Clone)]
pub(crate) struct StoredApp {
    pub name: String,
    pub version: u64,
    pub deployed_at: u64,
    pub record: AppRecord,
}

/// The `node.db` database.
pub(crate) struct Store {
    connection: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/node.db`.
    pub(crate) fn open(state_dir: &Path) -> Result<Self, NodeError> {
        let path = state_dir.join("node.db");
        let fail = |e: rusqlite::Error| NodeError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        let connection = Connection::open(&path).map_err(fail)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS apps (
                     name TEXT PRIMARY KEY,
                     version INTEGER NOT NULL,
                     deployed_at INTEGER NOT NULL,
                     record TEXT NOT NULL
                 );",
            )
            .map_err(fail)?;
        Ok(Self { connection, path })
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> NodeError + '_ {
        |e| NodeError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Every stored app, by name.
    pub(crate) fn all(&self) -> Result<Vec<StoredApp>, NodeError> {
        self.select(
            "SELECT name, version, deployed_at, record FROM apps ORDER BY name",
            [],
        )
    }

    fn select(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<StoredApp>, NodeError> {
        let mut statement = self.connection.prepare(sql).map_err(self.fail())?;
        let rows = statement
            .query_map(args, |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(self.fail())?;
        let mut apps = Vec::new();
        for row in rows {
            let (name, version, deployed_at, record) = row.map_err(self.fail())?;
            let record: AppRecord =
                serde_json::from_str(&record).map_err(|e| NodeError::Store {
                    path: self.path.clone(),
                    message: format!("the record of app `{name}` is unreadable: {e}"),
                })?;
            apps.push(StoredApp {
                name,
                version: u64::try_from(version).unwrap_or(0),
                deployed_at: u64::try_from(deployed_at).unwrap_or(0),
                record,
            });
        }
        Ok(apps)
    }

    /// Changes when another connection (the node, for its worker) commits to `node.db`.
    pub(crate) fn data_version(&self) -> Result<i64, NodeError> {
        self.connection
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .map_err(self.fail())
    }

    /// The stored app `name`, if there is one.
    pub(crate) fn get(&self, name: &str) -> Result<Option<StoredApp>, NodeError> {
        Ok(self
            .select(
                "SELECT name, version, deployed_at, record FROM apps WHERE name = ?1",
                params![name],
            )?
            .pop())
    }

    /// Stores `record` as the app `name`'s current version, in one transaction; returns
    /// the new version number.
    pub(crate) fn put(
        &mut self,
        name: &str,
        record: &AppRecord,
        deployed_at: u64,
    ) -> Result<u64, NodeError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| NodeError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        let json = serde_json::to_string(record).expect("app records serialize");
        let transaction = self.connection.transaction().map_err(fail)?;
        let previous: Option<i64> = transaction
            .query_row(
                "SELECT version FROM apps WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        let version = previous.unwrap_or(0) + 1;
        transaction
            .execute(
                "INSERT INTO apps (name, version, deployed_at, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET version = ?2, deployed_at = ?3, record = ?4",
                params![
                    name,
                    version,
                    i64::try_from(deployed_at).unwrap_or(i64::MAX),
                    json
                ],
            )
            .map_err(fail)?;
        transaction.commit().map_err(fail)?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    /// Removes the app `name`; whether it was there.
    pub(crate) fn remove(&mut self, name: &str) -> Result<bool, NodeError> {
        let removed = self
            .connection
            .execute("DELETE FROM apps WHERE name = ?1", params![name])
            .map_err(self.fail())?;
        Ok(removed > 0)
    }
}
