//! The SQLite backend: one thread owns every connection — `{dbs_dir}/jobs.db` (jobs, the Scrapy
//! Cloud registry, collections, frontier, activity) and one spider queue per project,
//! `{dbs_dir}/{project}.db` (Scrapyd's own file, so a Scrapyd folder's pending jobs carry over)
//! — and runs the storage methods sent to it one at a time. Nothing else opens these files.
//!
//! **One transaction per method.** A method that writes runs in [`Db::write`]: each file it
//! touches gets `BEGIN IMMEDIATE` on first use, and all of them commit when it succeeds or roll
//! back when it fails, so a failed method changed nothing. A method that writes to a queue file
//! and to `jobs.db` commits them in the order it names ([`CommitOrder`]): the file that makes
//! the job exist in its new place commits first, so a crash between the two commits leaves the
//! job in both places (which recovery resolves), never in neither. Reads need no transaction:
//! the one thread runs nothing between their statements.
//!
//! `dbs_dir = :memory:` keeps the same structure in memory (Scrapyd's version of that setting
//! never ran a job: its scheduler and poller opened two different memory databases).
//!
//! Two things keep it fast without weakening what an answer means:
//! - **Group commit for schedules.** Enqueues that wait in the channel together are written in
//!   one write scope (one fsync per file), and each is answered only after that commit.
//! - **A write generation.** A method that changed a row bumps the generation on the owner
//!   thread before its caller is answered; reads never do. Readers cache what they derive from
//!   the store under the generation it was read at (see [`crate::listing`]).

mod activity;
mod collections;
mod frontier;
mod jobs;
mod migrate;
mod queue;
mod registry;

use super::StorageError;
use super::model::{Admission, FinishedChange, JobKey, NewJob};
use crate::config::DbsDir;
use jobs::FinishedLog;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Name of the job store's database (`{dbs_dir}/jobs.db`).
pub const JOBS_DB: &str = "jobs";

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StorageError>>;

/// Work for the owner thread.
enum Task {
    /// Any method (it answers its caller itself).
    Run(Box<dyn FnOnce(&mut Db) + Send>),
    /// A job to queue (with its registry metadata and what it must not duplicate): consecutive
    /// ones are committed together.
    Enqueue(Box<NewJob>, Reply<Admission<JobKey>>),
}

/// Most enqueues committed in one transaction (bounds the wait of the first one).
const MAX_GROUP: usize = 256;

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | DiskFull | CannotOpen | SystemIoFailure) => {
                StorageError::Unavailable(e.to_string())
            }
            Some(ConstraintViolation) => StorageError::Conflict(e.to_string()),
            _ => StorageError::Internal(e.to_string()),
        }
    }
}

impl From<migrate::MigrateError> for StorageError {
    fn from(e: migrate::MigrateError) -> Self {
        match e {
            migrate::MigrateError::Sqlite(e) => e.into(),
            too_new => StorageError::Internal(too_new.to_string()),
        }
    }
}

/// Which file of a method commits first when it wrote to queue files and to `jobs.db`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOrder {
    /// Queue files, then `jobs.db` (a job queued, then registered).
    QueuesFirst,
    /// `jobs.db`, then the queue files (a job running, then taken off its queue).
    JobsFirst,
}

/// The connections, as seen from inside the owner thread.
pub struct Db {
    dbs: DbsDir,
    conns: HashMap<String, Connection>,
    /// Commits wait for the disk (`synchronous = FULL`); off only for seeding.
    durable: bool,
    /// Inside [`Db::write`]: files get a transaction on first use.
    writing: bool,
    /// The files that have a transaction open, in the order they were begun.
    begun: Vec<String>,
    /// How many finished jobs `jobs.db` holds, once counted (kept up to date by `finish`).
    finished_count: Option<usize>,
    /// The recent changes to the finished jobs (made by `finish` only).
    finished_log: FinishedLog,
    /// Changes of the open transaction, recorded in `finished_log` when it commits.
    finished_pending: Vec<FinishedChange>,
    /// Activity events written since the activity log was last trimmed.
    activity_writes: u64,
    /// Scrapy Cloud ids already read (they never change once given).
    cloud_ids: registry::IdCache,
}

impl Db {
    fn new(dbs: DbsDir) -> Result<Db, StorageError> {
        if let DbsDir::Dir(path) = &dbs {
            std::fs::create_dir_all(path).map_err(|e| {
                StorageError::Unavailable(format!("cannot create {}: {e}", path.display()))
            })?;
        }
        Ok(Db {
            dbs,
            conns: HashMap::new(),
            durable: true,
            writing: false,
            begun: Vec::new(),
            finished_count: None,
            finished_log: Default::default(),
            finished_pending: Vec::new(),
            activity_writes: 0,
            cloud_ids: Default::default(),
        })
    }

    /// The connection to `{dbs_dir}/{name}.db`, opened (and migrated) on first use; inside
    /// [`Db::write`], with its transaction begun.
    fn conn(&mut self, name: &str) -> Result<&Connection, StorageError> {
        if !self.conns.contains_key(name) {
            let conn = match &self.dbs {
                DbsDir::Memory => Connection::open_in_memory()?,
                DbsDir::Dir(dir) => {
                    let conn = Connection::open(dir.join(format!("{name}.db")))?;
                    conn.pragma_update(None, "journal_mode", "WAL")?;
                    // FULL: a commit is on disk before the request that made it is answered.
                    let sync = if self.durable { "FULL" } else { "OFF" };
                    conn.pragma_update(None, "synchronous", sync)?;
                    conn.busy_timeout(std::time::Duration::from_secs(5))?;
                    conn
                }
            };
            // One transaction: a half-migrated database is never left behind.
            let tx = conn.unchecked_transaction()?;
            let set = if name == JOBS_DB {
                migrate::JOBS
            } else {
                migrate::QUEUE
            };
            migrate::migrate(&tx, set).map_err(|e| match StorageError::from(e) {
                StorageError::Internal(m) => StorageError::Internal(format!("{name}.db: {m}")),
                other => other,
            })?;
            tx.commit()?;
            self.conns.insert(name.to_owned(), conn);
        }
        if self.writing && !self.begun.iter().any(|b| b == name) {
            if let Some(conn) = self.conns.get(name) {
                conn.execute_batch("BEGIN IMMEDIATE")?;
            }
            self.begun.push(name.to_owned());
        }
        self.conns.get(name).ok_or_else(StorageError::closed)
    }

    /// The connection to `jobs.db`.
    fn jobs(&mut self) -> Result<&Connection, StorageError> {
        self.conn(JOBS_DB)
    }

    /// Runs a method that writes as one transaction per file it touches: all of it is stored
    /// when it returns `Ok` (and the commits succeed), nothing when it fails.
    pub fn write<R>(
        &mut self,
        order: CommitOrder,
        f: impl FnOnce(&mut Db) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        if self.writing {
            // A method called from another one: the outer scope holds the transaction.
            return f(self);
        }
        self.writing = true;
        let result = f(self);
        self.writing = false;
        let begun = std::mem::take(&mut self.begun);
        let result = match result {
            Ok(v) => self.commit(begun, order).map(|()| v),
            Err(e) => {
                self.rollback(&begun);
                Err(e)
            }
        };
        self.settle(result.is_ok());
        result
    }

    fn commit(&mut self, mut begun: Vec<String>, order: CommitOrder) -> Result<(), StorageError> {
        // A stable sort: `jobs.db` first or last, the queue files in the order they were begun.
        begun.sort_by_key(|name| (name == JOBS_DB) == (order == CommitOrder::QueuesFirst));
        for (i, name) in begun.iter().enumerate() {
            let Some(conn) = self.conns.get(name) else {
                continue;
            };
            if let Err(e) = conn.execute_batch("COMMIT") {
                self.rollback(&begun[i..]);
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn rollback(&mut self, names: &[String]) {
        for name in names {
            if let Some(conn) = self.conns.get(name)
                && !conn.is_autocommit()
            {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }

    /// After a write scope: what it changed in memory is kept when it committed, forgotten
    /// (to be read again) when it did not.
    fn settle(&mut self, committed: bool) {
        let changes = std::mem::take(&mut self.finished_pending);
        if committed {
            for change in changes {
                self.finished_log.record(change);
            }
        } else {
            if !changes.is_empty() {
                self.finished_log.reset();
            }
            self.finished_count = None;
            self.cloud_ids = Default::default();
        }
    }

    /// Rows inserted, updated or deleted so far: unchanged means nothing was written.
    fn changes(&self) -> u64 {
        self.conns.values().map(Connection::total_changes).sum()
    }
}

/// A cheap, clonable handle to the owner thread.
#[derive(Clone)]
pub struct Sqlite {
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
            Task::Enqueue(job, reply) => {
                let mut group = vec![(job, reply)];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Task::Enqueue(job, reply)) => group.push((job, reply)),
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

impl Sqlite {
    /// Starts the owner thread and opens `jobs.db`; `durable = false` (seeding only) does not
    /// wait for commits to reach the disk.
    pub fn open(dbs: DbsDir, durable: bool) -> Result<Sqlite, StorageError> {
        let mut db = Db::new(dbs)?;
        db.durable = durable;
        db.conn(JOBS_DB)?;
        let (tx, rx) = mpsc::channel::<Task>();
        let generation = Arc::new(AtomicU64::new(0));
        let owner_generation = generation.clone();
        let finished_version = db.finished_log.shared_version();
        std::thread::Builder::new()
            .name("scrapyd-rs-db".into())
            .spawn(move || run_owner(db, rx, owner_generation))
            .map_err(|e| StorageError::Unavailable(format!("cannot start its thread: {e}")))?;
        Ok(Sqlite {
            tx,
            generation,
            finished_version,
        })
    }

    /// The write generation (see the module's documentation).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The version of the finished jobs: it changes (before the writer is answered) whenever a
    /// job finishes or a finished job is removed, and only then.
    pub fn finished_version(&self) -> u64 {
        self.finished_version.load(Ordering::Acquire)
    }

    /// Runs a method that writes (in one write scope, see [`Db::write`]).
    pub async fn write<R, F>(&self, order: CommitOrder, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StorageError> + Send + 'static,
    {
        let generation = self.generation.clone();
        self.run(move |db| {
            let before = db.changes();
            let result = db.write(order, f);
            if db.changes() != before {
                generation.fetch_add(1, Ordering::Release);
            }
            result
        })
        .await
    }

    /// Runs a method that only reads, and returns its result with the generation it saw.
    pub async fn read<R, F>(&self, f: F) -> Result<(u64, R), StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StorageError> + Send + 'static,
    {
        let generation = self.generation.clone();
        self.run(move |db| {
            let seen = generation.load(Ordering::Acquire);
            f(db).map(|r| (seen, r))
        })
        .await
    }

    async fn run<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StorageError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Task::Run(Box::new(move |db: &mut Db| {
                let _ = reply.send(f(db));
            })))
            .map_err(|_| StorageError::closed())?;
        rx.await.map_err(|_| StorageError::closed())?
    }

    /// Queues a job unless it duplicates an active one; answered once it is committed
    /// (together with the enqueues around it), with its registry key (see
    /// [`Db::enqueue_group`]).
    pub async fn enqueue(&self, job: NewJob) -> Result<Admission<JobKey>, StorageError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Task::Enqueue(Box::new(job), reply))
            .map_err(|_| StorageError::closed())?;
        rx.await.map_err(|_| StorageError::closed())?
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
    use crate::storage::model::*;
    #[allow(unused_imports)]
    use crate::storage::test_prelude::*;
    use serde_json::Map;

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
        let store = Sqlite::open(DbsDir::Dir(dir.path().to_path_buf()), true).unwrap();
        let before = store.generation();
        let mut calls = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            let project = if i % 3 == 0 { "a" } else { "b" };
            calls.push(tokio::spawn(async move {
                store.enqueue(job(project, &format!("{i:03}")).into()).await
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
        let store = Sqlite::open(DbsDir::Memory, true).unwrap();
        let g = store.generation();
        store.read(|db| db.finished_count()).await.unwrap();
        store
            .write(CommitOrder::QueuesFirst, |db| {
                db.pending_count(&["p".into()])
            })
            .await
            .unwrap();
        store
            .write(CommitOrder::QueuesFirst, |db| {
                db.remove_pending("p", "nothing-here")
            })
            .await
            .unwrap();
        assert_eq!(store.generation(), g);
        store
            .write(CommitOrder::QueuesFirst, |db| {
                db.enqueue(&job("p", "j"), &Map::new())
            })
            .await
            .unwrap();
        assert_eq!(store.generation(), g + 1);
        let (seen, n) = store
            .read(|db| db.pending_count(&["p".into()]))
            .await
            .unwrap();
        assert_eq!((seen, n), (g + 1, 1));
    }

    #[test]
    fn sqlite_errors_become_what_a_caller_can_act_on() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .unwrap();
        let duplicate = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert!(matches!(
            StorageError::from(duplicate),
            StorageError::Conflict(_)
        ));
        let missing = conn.execute("SELECT * FROM nowhere", []).unwrap_err();
        assert!(matches!(
            StorageError::from(missing),
            StorageError::Internal(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let unopenable = Connection::open(dir.path().join("no/such/folder/x.db")).unwrap_err();
        assert!(matches!(
            StorageError::from(unopenable),
            StorageError::Unavailable(_)
        ));
    }

    #[test]
    fn a_failed_write_changes_nothing_in_any_file() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let failed: Result<(), StorageError> = db.write(CommitOrder::QueuesFirst, |db| {
            db.enqueue(&job("a", "j1"), &Map::new())?;
            db.enqueue(&job("b", "j2"), &Map::new())?;
            Err(StorageError::Conflict("refused".into()))
        });
        assert!(failed.is_err());
        assert_eq!(db.pending_count(&["a".into(), "b".into()]).unwrap(), 0);
        // The registry row written in the same scope went too.
        assert!(db.cloud_job_of("a", "j1").unwrap().is_none());
        db.write(CommitOrder::QueuesFirst, |db| {
            db.enqueue(&job("a", "j3"), &Map::new())
        })
        .unwrap();
        assert!(db.cloud_job_of("a", "j3").unwrap().is_some());
    }

    #[test]
    fn a_duplicate_in_the_same_group_is_refused_and_stores_nothing() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let same = |id: &str| {
            let mut meta = Map::new();
            meta.insert("unique".into(), "u".into());
            Box::new(NewJob {
                job: job("a", id),
                meta,
                unique: Uniqueness::Value("u".into()),
            })
        };
        let jobs = vec![same("j1"), Box::new(job("a", "j2").into()), same("j3")];
        let results = db.enqueue_group(&jobs);
        let first = match &results[0] {
            Ok(Admission::Admitted(key)) => *key,
            other => panic!("the first job is admitted: {other:?}"),
        };
        assert!(matches!(results[1], Ok(Admission::Admitted(_))));
        assert!(
            matches!(results[2], Ok(Admission::Duplicate(k)) if k == first),
            "{:?}",
            results[2]
        );
        let ids: Vec<String> = db
            .pending(&["a".into()])
            .unwrap()
            .into_iter()
            .map(|p| p.job)
            .collect();
        assert_eq!(ids, ["j1", "j2"]);
        assert!(db.cloud_job_of("a", "j3").unwrap().is_none());
    }

    #[test]
    fn a_group_spanning_projects_stores_each_job_once() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let jobs: Vec<Box<NewJob>> = ["a", "b", "a", "c", "b"]
            .iter()
            .enumerate()
            .map(|(i, p)| Box::new(job(p, &format!("j{i}")).into()))
            .collect();
        let results = db.enqueue_group(&jobs);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(Admission::Admitted(_))))
        );
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
