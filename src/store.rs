//! The one owner of SQLite state. A dedicated thread holds every connection — the finished-job
//! store `{dbs_dir}/jobs.db` and one spider queue per project, `{dbs_dir}/{project}.db` — and runs
//! the closures that the rest of the daemon sends it, one at a time. Nothing else opens these
//! files, so every read sees a consistent state and no two writers race.
//!
//! `dbs_dir = :memory:` keeps the same structure in memory (Scrapyd's version of that setting
//! never ran a job: its scheduler and poller opened two different memory databases).
//!
//! Two things keep it fast without weakening what an answer means:
//! - **Group commit for schedules.** Enqueues that wait in the channel together are written in
//!   one transaction per project (one fsync), and each is answered only after that commit.
//! - **A write generation.** A [`Store::call`] that changed a row bumps [`Store::generation`]
//!   on the owner thread before its caller is answered; [`Store::read`] never does. Readers cache
//!   what they derive from the store under the generation it was read at (see [`crate::listing`]).

use crate::cloud::registry::JobKey;
use crate::config::DbsDir;
use crate::queue::PendingJob;
use rusqlite::Connection;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

/// Work for the owner thread.
enum Task {
    /// Any closure (it answers its caller itself).
    Run(Box<dyn FnOnce(&mut Db) + Send>),
    /// A job to queue (with its `run.json` metadata): consecutive ones are committed together.
    Enqueue(Box<PendingJob>, Map<String, Value>, Reply<Option<JobKey>>),
}

/// Most enqueues committed in one transaction (bounds the wait of the first one).
const MAX_GROUP: usize = 256;

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
    /// A group commit failed; the write it carried was not stored.
    #[error("database error: {0}")]
    Commit(String),
}

/// The connections, as seen from inside the owner thread.
pub struct Db {
    dbs: DbsDir,
    conns: HashMap<String, Connection>,
    /// How many finished jobs `jobs.db` holds, once counted (kept up to date by `finish`).
    pub(crate) finished_count: Option<usize>,
    /// The recent changes to the finished jobs (made by `finish` only).
    pub(crate) finished_log: crate::jobs::FinishedLog,
    /// Rows changed through connections that were closed since.
    closed_changes: u64,
    /// Activity events written since the activity log was last trimmed.
    pub(crate) activity_writes: u64,
    /// Scrapy Cloud ids already read (they never change once given).
    pub(crate) cloud_ids: crate::cloud::registry::IdCache,
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
            finished_count: None,
            finished_log: Default::default(),
            closed_changes: 0,
            activity_writes: 0,
            cloud_ids: Default::default(),
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
            // One transaction: a half-migrated database is never left behind.
            let tx = conn.unchecked_transaction()?;
            crate::queue::migrate(&tx)?;
            if name == crate::jobs::JOBS_DB {
                crate::jobs::migrate(&tx)?;
                crate::cloud::registry::migrate(&tx)?;
                crate::cloud::activity::migrate(&tx)?;
                crate::cloud::collections::migrate(&tx)?;
                crate::cloud::frontier::migrate(&tx)?;
            }
            tx.commit()?;
            self.conns.insert(name.to_owned(), conn);
        }
        self.conns.get(name).ok_or(StoreError::Closed)
    }

    /// Forgets a project's queue connection (after its pending jobs were removed).
    pub fn close(&mut self, name: &str) {
        if !matches!(self.dbs, DbsDir::Memory)
            && let Some(conn) = self.conns.remove(name)
        {
            self.closed_changes += conn.total_changes();
        }
    }

    /// Rows inserted, updated or deleted so far: unchanged means nothing was written.
    fn changes(&self) -> u64 {
        self.closed_changes
            + self
                .conns
                .values()
                .map(Connection::total_changes)
                .sum::<u64>()
    }
}

/// A cheap, clonable handle to the owner thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Task>,
    generation: Arc<AtomicU64>,
    finished_version: Arc<AtomicU64>,
}

/// The owner thread's loop: runs tasks in arrival order, grouping consecutive enqueues.
fn run_owner(mut db: Db, rx: mpsc::Receiver<Task>, generation: Arc<AtomicU64>) {
    let mut next = None;
    loop {
        let task = match next.take() {
            Some(task) => task,
            None => match rx.recv() {
                Ok(task) => task,
                Err(_) => return,
            },
        };
        match task {
            Task::Run(f) => f(&mut db),
            Task::Enqueue(job, extra, reply) => {
                let mut group = vec![((job, extra), reply)];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Task::Enqueue(job, extra, reply)) => group.push(((job, extra), reply)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let (jobs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                let results = db.enqueue_group(&jobs);
                generation.fetch_add(1, Ordering::Release);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        }
    }
}

impl Store {
    /// Starts the owner thread and opens `jobs.db`.
    pub fn open(dbs: DbsDir) -> Result<Store, StoreError> {
        let mut db = Db::new(dbs)?;
        db.conn(crate::jobs::JOBS_DB)?;
        let (tx, rx) = mpsc::channel::<Task>();
        let generation = Arc::new(AtomicU64::new(0));
        let owner_generation = generation.clone();
        let finished_version = db.finished_log.shared_version();
        std::thread::Builder::new()
            .name("scrapyd-rs-db".into())
            .spawn(move || run_owner(db, rx, owner_generation))
            .map_err(|source| StoreError::Dir {
                path: "thread".into(),
                source,
            })?;
        Ok(Store {
            tx,
            generation,
            finished_version,
        })
    }

    /// The write generation: it changes (before the writer is answered) whenever a
    /// [`Store::call`] or [`Store::enqueue`] changed a row, so equal generations mean equal
    /// contents.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The version of the finished jobs: it changes (before the writer is answered) whenever a
    /// job finishes or a finished job is removed, and only then (see
    /// [`crate::jobs::FinishedLog`]).
    pub fn finished_version(&self) -> u64 {
        self.finished_version.load(Ordering::Acquire)
    }

    /// Runs `f` on the owner thread and returns its result; `f` may write.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    {
        let generation = self.generation.clone();
        self.run(move |db| {
            let before = db.changes();
            let result = f(db);
            if db.changes() != before {
                generation.fetch_add(1, Ordering::Release);
            }
            result
        })
        .await
    }

    /// Runs a closure that only reads, and returns its result with the generation it saw.
    pub async fn read<R, F>(&self, f: F) -> Result<(u64, R), StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    {
        let generation = self.generation.clone();
        self.run(move |db| {
            let seen = generation.load(Ordering::Acquire);
            f(db).map(|r| (seen, r))
        })
        .await
    }

    async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Task::Run(Box::new(move |db: &mut Db| {
                let _ = reply.send(f(db));
            })))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a job; answered once it is committed (together with the enqueues around it),
    /// with its Scrapy Cloud key (see [`Db::enqueue_group`]). `extra` is metadata from
    /// `run.json`.
    pub async fn enqueue(
        &self,
        job: PendingJob,
        extra: Map<String, Value>,
    ) -> Result<Option<JobKey>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Task::Enqueue(Box::new(job), extra, reply))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(project: &str, id: &str) -> PendingJob {
        PendingJob {
            project: project.into(),
            spider: "s".into(),
            job: id.into(),
            priority: 0.0,
            version: None,
            settings: vec![],
            args: vec![],
            created: 1,
        }
    }

    #[tokio::test]
    async fn concurrent_enqueues_are_all_stored_in_order_and_bump_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(DbsDir::Dir(dir.path().to_path_buf())).unwrap();
        let before = store.generation();
        let mut calls = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            let project = if i % 3 == 0 { "a" } else { "b" };
            calls.push(tokio::spawn(async move {
                store
                    .enqueue(job(project, &format!("{i:03}")), Map::new())
                    .await
            }));
        }
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert!(store.generation() > before);
        let (_, pending) = store
            .read(|db| db.pending(&["a".into(), "b".into()]))
            .await
            .unwrap();
        assert_eq!(pending.len(), 200);
        let mut ids: Vec<&str> = pending.iter().map(|p| p.job.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
    }

    #[tokio::test]
    async fn reads_and_calls_that_change_nothing_keep_the_generation() {
        let store = Store::open(DbsDir::Memory).unwrap();
        let g = store.generation();
        store.read(|db| db.finished_count()).await.unwrap();
        store
            .call(|db| db.pending_count(&["p".into()]))
            .await
            .unwrap();
        store
            .call(|db| db.remove_pending("p", "nothing-here"))
            .await
            .unwrap();
        assert_eq!(store.generation(), g);
        store.call(|db| db.enqueue(&job("p", "j"))).await.unwrap();
        assert_eq!(store.generation(), g + 1);
        let (seen, n) = store
            .read(|db| db.pending_count(&["p".into()]))
            .await
            .unwrap();
        assert_eq!((seen, n), (g + 1, 1));
    }

    #[test]
    fn a_group_spanning_projects_stores_each_job_once() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let jobs: Vec<(Box<PendingJob>, Map<String, Value>)> = ["a", "b", "a", "c", "b"]
            .iter()
            .enumerate()
            .map(|(i, p)| (Box::new(job(p, &format!("j{i}"))), Map::new()))
            .collect();
        let results = db.enqueue_group(&jobs);
        assert!(results.iter().all(Result::is_ok));
        let a: Vec<String> = db
            .pending(&["a".into()])
            .unwrap()
            .into_iter()
            .map(|p| p.job)
            .collect();
        assert_eq!(a, ["j0", "j2"]);
        assert_eq!(
            db.pending_count(&["a".into(), "b".into(), "c".into()])
                .unwrap(),
            5
        );
    }
}
