//! Versioned migrations of the SQLite files: numbered SQL files per kind of database, embedded
//! in the binary, applied in order inside the transaction that opens the file. A file records
//! the last migration it has in `PRAGMA user_version`.
//!
//! Two kinds of files: `jobs.db` ([`JOBS`]) and a project's spider queue `{project}.db`
//! ([`QUEUE`]). A file from before the versions (user version 0 with tables in it: a queue
//! file Scrapyd wrote, or a file of an older scrapyd-rs) is adopted first: the columns that
//! scrapyd-rs added to those tables over time are added when they are missing, so that the
//! first migration finds what it creates.

use crate::storage::migration::{Migration, TooNew, missing};
use rusqlite::Connection;

/// The migrations of `jobs.db`.
pub const JOBS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/jobs/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/jobs/0002_registry.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/jobs/0003_activity.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/jobs/0004_collections.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("migrations/jobs/0005_frontier.sql"),
    },
];

/// The migrations of a project's queue file.
pub const QUEUE: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("migrations/queue/0001_spider_queue.sql"),
}];

/// Columns added to existing tables before migrations were versioned: `(table, column, type)`.
const UNVERSIONED_COLUMNS: &[(&str, &str, &str)] = &[
    ("spider_queue", "created", "integer NOT NULL DEFAULT 0"),
    ("spider_queue", "job", "text"),
    ("jobs", "finish_reason", "TEXT"),
    ("jobs", "stats", "TEXT"),
    ("jobs", "proc_start", "TEXT"),
];

/// Why a file cannot be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    TooNew(#[from] TooNew),
}

/// Brings a file up to date with `migrations`; the caller holds the transaction.
pub fn migrate(conn: &Connection, migrations: &[Migration]) -> Result<(), MigrateError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let missing = missing(migrations, found)?;
    if found == 0 {
        adopt_unversioned(conn)?;
    }
    for m in missing {
        conn.execute_batch(m.sql)?;
        conn.pragma_update(None, "user_version", m.version)?;
    }
    Ok(())
}

/// Adds the columns of [`UNVERSIONED_COLUMNS`] that an existing table lacks.
fn adopt_unversioned(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in UNVERSIONED_COLUMNS {
        let has_table = conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
            .exists([table])?;
        let has_column = conn
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
            .exists([table, column])?;
        if has_table && !has_column {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl};"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> u32 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for set in [JOBS, QUEUE] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1);
            }
        }
    }

    #[test]
    fn a_queue_file_of_scrapyd_is_adopted_and_keeps_its_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE spider_queue (id integer PRIMARY KEY, priority real key, message blob);
             INSERT INTO spider_queue (priority, message) VALUES (1, '{\"name\": \"s\", \"_job\": \"j\"}');",
        )
        .unwrap();
        migrate(&conn, QUEUE).unwrap();
        assert_eq!(version(&conn), 1);
        let (created, job): (i64, Option<String>) = conn
            .query_row("SELECT created, job FROM spider_queue", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((created, job), (0, None));
        // Once versioned, a second open runs nothing.
        migrate(&conn, QUEUE).unwrap();
        assert_eq!(version(&conn), 1);
    }

    #[test]
    fn an_unversioned_jobs_db_of_an_older_scrapyd_rs_gets_its_missing_columns() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, project TEXT NOT NULL, spider TEXT NOT NULL,
               job TEXT NOT NULL, version TEXT, settings TEXT NOT NULL DEFAULT '{}',
               args TEXT NOT NULL DEFAULT '{}', priority REAL NOT NULL DEFAULT 0,
               state TEXT NOT NULL, pid INTEGER, start_time INTEGER NOT NULL, end_time INTEGER,
               exit_code INTEGER, signal INTEGER, outcome TEXT, reason TEXT);",
        )
        .unwrap();
        migrate(&conn, JOBS).unwrap();
        assert_eq!(version(&conn), JOBS.len() as u32);
        conn.execute(
            "UPDATE jobs SET finish_reason = 'x', stats = '{}', proc_start = 'y'",
            [],
        )
        .unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM cloud_frontier_request", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_file_of_a_newer_scrapyd_rs_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let e = migrate(&conn, JOBS).unwrap_err();
        assert!(e.to_string().contains("99"), "{e}");
    }
}
