//! [`PgTx`]: one open PostgreSQL transaction, seen as the synchronous [`Rows`] the rest of
//! the storage layer composes. A storage method runs on a blocking thread
//! ([`super::Postgres::transact`]); each statement is prepared once per connection and
//! awaited there with the runtime's handle, so the lifecycle and registry logic written once
//! for both backends runs unchanged inside a PostgreSQL transaction.
//!
//! [`Rows`]: crate::storage::rows::Rows

use super::from_postgres;
use crate::storage::StorageError;
use crate::storage::model::FinishedChange;
use std::sync::atomic::AtomicU64;
use tokio::runtime::Handle;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub(super) type Result<T> = std::result::Result<T, StorageError>;

/// Statement parameters.
pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// Advisory lock classes (the first key of `pg_advisory_xact_lock(int, int)`; the second is a
/// hash of the project).
pub(super) const LOCK_ADMISSION: i32 = 1;
/// Giving project ids (the second key is 0) and spider ids (a hash of the project).
pub(super) const LOCK_IDS: i32 = 2;

/// Rows fetched per round trip when a method visits rows until it has enough.
pub(super) const VISIT_BATCH: i32 = 256;

/// One open transaction of a node.
pub struct PgTx<'a> {
    pub(super) tx: deadpool_postgres::Transaction<'a>,
    pub(super) rt: Handle,
    /// This node's name (the jobs it runs carry it).
    pub(super) node: &'a str,
    /// This node's registration number, as of the transaction's start.
    pub(super) registration: i64,
    /// The URL without its password, for messages.
    pub(super) shown: &'a str,
    /// Whether a queue or job row changed (the change feed moves at commit).
    pub(super) jobs_changed: bool,
    /// Changes to the finished jobs, numbered in the change feed at commit.
    pub(super) finished: Vec<FinishedChange>,
    /// Activity events this node wrote since it last trimmed a log.
    pub(super) activity_writes: &'a AtomicU64,
}

impl PgTx<'_> {
    fn error(&self, e: tokio_postgres::Error) -> StorageError {
        from_postgres(self.shown, "a storage statement failed", &e)
    }

    /// The rows of a statement.
    pub(super) fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.rt
            .block_on(async {
                let statement = self.tx.prepare_cached(sql).await?;
                self.tx.query(&statement, params).await
            })
            .map_err(|e| self.error(e))
    }

    /// The row of a statement, if any.
    pub(super) fn opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row of a statement.
    pub(super) fn one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.opt(sql, params)?
            .ok_or_else(|| StorageError::Internal(format!("no row from {sql}")))
    }

    /// How many rows a statement changed.
    pub(super) fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.rt
            .block_on(async {
                let statement = self.tx.prepare_cached(sql).await?;
                self.tx.execute(&statement, params).await
            })
            .map_err(|e| self.error(e))
    }

    /// Visits the rows of a statement, [`VISIT_BATCH`] at a time, until `visit` says stop.
    pub(super) fn visit(
        &self,
        sql: &str,
        params: Params<'_>,
        visit: &mut dyn FnMut(&Row) -> bool,
    ) -> Result<()> {
        let portal = self
            .rt
            .block_on(async {
                let statement = self.tx.prepare_cached(sql).await?;
                self.tx.bind(&statement, params).await
            })
            .map_err(|e| self.error(e))?;
        loop {
            let rows = self
                .rt
                .block_on(self.tx.query_portal(&portal, VISIT_BATCH))
                .map_err(|e| self.error(e))?;
            for row in &rows {
                if !visit(row) {
                    return Ok(());
                }
            }
            if rows.len() < VISIT_BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Takes an advisory lock of `class` on `key` until the transaction ends.
    pub(super) fn lock(&self, class: i32, key: &str) -> Result<()> {
        self.query(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&class, &key],
        )?;
        Ok(())
    }
}
