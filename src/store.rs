//! The one owner of SQLite state. A dedicated thread holds every connection — the finished-job
//! store `{dbs_dir}/jobs.db` and one spider queue per project, `{dbs_dir}/{project}.db` — and runs
//! the closures that the rest of the daemon sends it, one at a time. Nothing else opens these
//! files, so every read sees a consistent state and no two writers race.
//!
//! `dbs_dir = :memory:` keeps the same structure in memory (Scrapyd's version of that setting
//! never ran a job: its scheduler and poller opened two different memory databases).

use crate::config::DbsDir;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::mpsc;

type Task = Box<dyn FnOnce(&mut Db) + Send>;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database folder could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// The owner thread is gone (the daemon is shutting down).
    #[error("the database thread has stopped")]
    Closed,
}

/// The connections, as seen from inside the owner thread.
pub struct Db {
    dbs: DbsDir,
    conns: HashMap<String, Connection>,
}

impl Db {
    fn new(dbs: DbsDir) -> Result<Db, StoreError> {
        if let DbsDir::Dir(path) = &dbs {
            std::fs::create_dir_all(path).map_err(|source| StoreError::Dir {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(Db {
            dbs,
            conns: HashMap::new(),
        })
    }

    /// The connection to `{dbs_dir}/{name}.db`, opened (and set up) on first use.
    pub fn conn(&mut self, name: &str) -> Result<&Connection, StoreError> {
        if !self.conns.contains_key(name) {
            let conn = match &self.dbs {
                DbsDir::Memory => Connection::open_in_memory()?,
                DbsDir::Dir(dir) => {
                    let conn = Connection::open(dir.join(format!("{name}.db")))?;
                    conn.pragma_update(None, "journal_mode", "WAL")?;
                    // FULL: a commit is on disk before the request that made it is answered.
                    conn.pragma_update(None, "synchronous", "FULL")?;
                    conn.busy_timeout(std::time::Duration::from_secs(5))?;
                    conn
                }
            };
            crate::queue::migrate(&conn)?;
            if name == crate::jobs::JOBS_DB {
                crate::jobs::migrate(&conn)?;
            }
            self.conns.insert(name.to_owned(), conn);
        }
        self.conns.get(name).ok_or(StoreError::Closed)
    }

    /// Forgets a project's queue connection (after its pending jobs were removed).
    pub fn close(&mut self, name: &str) {
        if !matches!(self.dbs, DbsDir::Memory) {
            self.conns.remove(name);
        }
    }
}

/// A cheap, clonable handle to the owner thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Task>,
}

impl Store {
    /// Starts the owner thread and opens `jobs.db`.
    pub fn open(dbs: DbsDir) -> Result<Store, StoreError> {
        let mut db = Db::new(dbs)?;
        db.conn(crate::jobs::JOBS_DB)?;
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("scrapyd-rs-db".into())
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    task(&mut db);
                }
            })
            .map_err(|source| StoreError::Dir {
                path: "thread".into(),
                source,
            })?;
        Ok(Store { tx })
    }

    /// Runs `f` on the owner thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |db: &mut Db| {
                let _ = reply.send(f(db));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
impl Db {
    /// A store without its thread, for unit tests.
    pub fn new_for_tests(dbs: DbsDir) -> Db {
        Db::new(dbs).expect("test database")
    }
}
