//! The storage layer: every piece of state the daemon keeps in a database goes through
//! [`Storage`], a cheap handle with typed methods, each one transaction, named after what it
//! does (`enqueue`, `claim_next`, `finish`, `cancel_pending`, …). No caller outside this module
//! sees a connection or writes SQL.
//!
//! - [`model`]: the values stored and answered (no database type in them).
//! - [`StorageError`]: why a method failed; a failed method changed nothing.
//! - `sqlite`: the embedded backend (one thread owning `{dbs_dir}/jobs.db` and Scrapyd's
//!   per-project queue files, versioned migrations).
//! - [`postgres`]: the backend for several nodes on one database (every method runs on it;
//!   not selectable by `scrapyd.conf` yet).
//! - `rows`: what one transaction of a backend reads and writes, row by row (each backend
//!   writes these in its own SQL); `lifecycle` (queued → running → finished) and `registry`
//!   (the Scrapy Cloud registry following job events) are written once on top of them, so
//!   both backends run the same logic in their own transactions.
//!
//! The Scrapyd side (queues and jobs) knows nothing of the Scrapy Cloud registry: it reports
//! job events (queued, started, removed, finished), and the registry follows them in the same
//! transaction.

mod error;
mod lifecycle;
pub mod migration;
pub mod model;
pub mod postgres;
mod registry;
mod rows;
mod sqlite;

pub use error::StorageError;

/// The SQLite backend's connections, for the unit tests of code built on a method's answer
/// (scan planning, frontier batches).
#[cfg(test)]
pub(crate) use sqlite::Db as TestDb;

/// What unit tests call on a [`TestDb`]: the row operations and what is built on them.
#[cfg(test)]
#[allow(unused_imports)]
pub(crate) mod test_prelude {
    pub(crate) use super::lifecycle::Lifecycle;
    pub(crate) use super::registry::Registry;
    pub(crate) use super::rows::*;
}

use crate::config::DbsDir;
use lifecycle::Lifecycle;
use model::*;
use registry::Registry;
use rows::Rows;
use serde_json::{Map, Value};
use sqlite::CommitOrder;

/// The handle to the daemon's storage (cheap to clone).
#[derive(Clone)]
pub enum Storage {
    /// SQLite files under `dbs_dir`, owned by one thread.
    Sqlite(sqlite::Sqlite),
    /// A PostgreSQL database shared by the nodes of a cluster.
    Postgres(postgres::Postgres),
}

type Result<T> = std::result::Result<T, StorageError>;

impl Storage {
    /// Opens the SQLite storage under `dbs` (created and migrated as needed).
    pub fn open(dbs: DbsDir) -> Result<Storage> {
        Ok(Storage::Sqlite(sqlite::Sqlite::open(dbs, true)?))
    }

    /// Opens the SQLite storage without waiting for each commit to reach the disk: for
    /// seeding a folder that no daemon uses (`scripts/seed_history.rs`), never for serving.
    pub fn open_for_seeding(dbs: DbsDir) -> Result<Storage> {
        Ok(Storage::Sqlite(sqlite::Sqlite::open(dbs, false)?))
    }

    /// Connects to the PostgreSQL database at `url` as node `node` (migrating it as needed).
    pub async fn connect(url: &str, node: &str) -> Result<Storage> {
        Ok(Storage::Postgres(
            postgres::Postgres::connect(url, node).await?,
        ))
    }

    /// Changes (before the writer is answered) whenever a method changed a row: equal
    /// generations mean equal contents. (On PostgreSQL: as this node last saw it.)
    pub fn generation(&self) -> u64 {
        match self {
            Storage::Sqlite(db) => db.generation(),
            Storage::Postgres(db) => db.generation(),
        }
    }

    /// The version of the finished jobs: it changes (before the writer is answered) whenever a
    /// job finishes or a finished job is removed, and only then. (On PostgreSQL: as this node
    /// last saw it.)
    pub fn finished_version(&self) -> u64 {
        match self {
            Storage::Sqlite(db) => db.finished_version(),
            Storage::Postgres(db) => db.finished_version(),
        }
    }

    /// Runs a method that writes, as one transaction of the backend (`order`: which of
    /// SQLite's files commits first when it writes to a queue file and to `jobs.db`).
    async fn write<R, F>(&self, order: CommitOrder, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Rows) -> Result<R> + Send + 'static,
    {
        match self {
            Storage::Sqlite(db) => db.write(order, move |db| f(db)).await,
            Storage::Postgres(db) => db.write(f).await,
        }
    }

    /// Runs a method that only reads, as of one moment; returns its result with the write
    /// generation it saw.
    async fn read<R, F>(&self, f: F) -> Result<(u64, R)>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Rows) -> Result<R> + Send + 'static,
    {
        match self {
            Storage::Sqlite(db) => db.read(move |db| f(db)).await,
            Storage::Postgres(db) => db.read(f).await,
        }
    }

    // ---- Nodes (of a cluster: on SQLite there is one node, and nothing of it to store)

    /// The cluster's egg tables (`None` on SQLite: eggs are files under `eggs_dir`).
    pub fn shared_eggs(&self) -> Option<postgres::EggTables> {
        match self {
            Storage::Sqlite(_) => None,
            Storage::Postgres(db) => Some(postgres::EggTables::new(db.clone())),
        }
    }

    /// Whether several nodes may share this storage (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, Storage::Postgres(_))
    }

    /// Registers this node (see `postgres::Postgres::register_node`); on SQLite, always
    /// registered.
    pub async fn register_node(
        &self,
        info: NodeInfo,
        timeout: std::time::Duration,
        expected: Option<i64>,
    ) -> Result<Registration> {
        match self {
            Storage::Sqlite(_) => Ok(Registration::Registered(1)),
            Storage::Postgres(db) => db.register_node(info, timeout, expected).await,
        }
    }

    /// Beats this node's heartbeat; `false` when its registration was taken over.
    pub async fn heartbeat(&self) -> Result<bool> {
        match self {
            Storage::Sqlite(_) => Ok(true),
            Storage::Postgres(db) => db.heartbeat().await,
        }
    }

    /// Declares dead the nodes silent for `timeout` and records their running jobs `lost`.
    pub async fn sweep_dead_nodes(
        &self,
        timeout: std::time::Duration,
        keep: usize,
    ) -> Result<Vec<LostJob>> {
        match self {
            Storage::Sqlite(_) => Ok(Vec::new()),
            Storage::Postgres(db) => db.sweep_dead_nodes(timeout, keep).await,
        }
    }

    /// Asks the other nodes running `job` of `project` to signal it; how many crawls were
    /// asked (none on SQLite).
    pub async fn request_cancel(&self, project: &str, job: &str, signal: &str) -> Result<usize> {
        match self {
            Storage::Sqlite(_) => Ok(0),
            Storage::Postgres(db) => db.request_cancel(project, job, signal).await,
        }
    }

    /// The cancels other nodes asked for the crawls of this one (none on SQLite).
    pub async fn cancel_requests(&self) -> Result<Vec<CancelRequest>> {
        match self {
            Storage::Sqlite(_) => Ok(Vec::new()),
            Storage::Postgres(db) => db.cancel_requests().await,
        }
    }

    /// The node that ran the newest run of `job` of `project` (`None` on SQLite, or when no
    /// node ran it).
    pub async fn job_node(
        &self,
        project: &str,
        job: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<JobNode>> {
        match self {
            Storage::Sqlite(_) => Ok(None),
            Storage::Postgres(db) => db.job_node(project, job, timeout).await,
        }
    }

    /// The nodes of the cluster (`None` on SQLite: this node is the only one).
    pub async fn nodes(&self, timeout: std::time::Duration) -> Result<Option<Vec<NodeStatus>>> {
        match self {
            Storage::Sqlite(_) => Ok(None),
            Storage::Postgres(db) => db.nodes(timeout).await.map(Some),
        }
    }

    /// Makes [`Storage::generation`] and [`Storage::finished_version`] at least what any node
    /// committed before this call (on SQLite they always are).
    pub async fn refresh_versions(&self) -> Result<()> {
        match self {
            Storage::Sqlite(_) => Ok(()),
            Storage::Postgres(db) => db.refresh_versions().await,
        }
    }

    /// Calls `on_change` whenever another node changes a queue or a job, until `stop` (on
    /// SQLite there is no other node).
    pub fn listen(
        &self,
        on_change: impl Fn() + Send + Sync + 'static,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if let Storage::Postgres(db) = self {
            db.listen(on_change, stop);
        }
    }

    // ---- Scrapyd's queues and jobs

    /// Queues a job unless an active job of its project is one it must not duplicate (then
    /// nothing is stored): the check, the queue entry and the registry entry are one
    /// transaction, so the job has its key from the moment it is queued. Answered once it is
    /// committed; concurrent enqueues are committed together.
    pub async fn enqueue(&self, job: NewJob) -> Result<Admission<JobKey>> {
        match self {
            Storage::Sqlite(db) => db.enqueue(job).await,
            Storage::Postgres(db) => db.write(move |tx| tx.admit(&job)).await,
        }
    }

    /// Removes every pending entry of `project` with this job id; returns how many.
    pub async fn cancel_pending(&self, project: &str, job: &str) -> Result<usize> {
        let (p, j) = (project.to_owned(), job.to_owned());
        self.write(CommitOrder::QueuesFirst, move |db| {
            db.remove_pending(&p, &j)
        })
        .await
    }

    /// Removes every pending job of `project`; returns how many.
    pub async fn clear_pending(&self, project: &str) -> Result<usize> {
        let p = project.to_owned();
        self.write(CommitOrder::QueuesFirst, move |db| db.clear_pending(&p))
            .await
    }

    /// Takes the job that should start next among `projects` (highest priority, then oldest)
    /// off its queue and records it running, with its Scrapy Cloud key and environment: one
    /// unit, so no reader ever sees the job in neither place.
    pub async fn claim_next(&self, projects: Vec<String>, now: i64) -> Result<Option<Claim>> {
        self.write(CommitOrder::JobsFirst, move |db| {
            let Some(record) = db.start_next(&projects, now)? else {
                return Ok(None);
            };
            let registry = db.launch_environment(&record.project, &record.job);
            Ok(Some(Claim { record, registry }))
        })
        .await
    }

    /// Records the pid and process identity of a running job.
    pub async fn set_pid(&self, id: i64, pid: u32, identity: Option<String>) -> Result<()> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.set_pid(id, pid, identity.as_deref())
        })
        .await
    }

    /// Records a job's end and applies the retention; returns the Scrapy Cloud jobs removed by
    /// it (their data folders are the caller's to remove).
    pub async fn finish(
        &self,
        id: i64,
        ending: Ending,
        retention: Retention,
    ) -> Result<Vec<JobKey>> {
        self.write(CommitOrder::JobsFirst, move |db| {
            let spider = db.job_spider(id)?;
            db.finish(id, &ending, retention.finished_to_keep)?;
            Ok(match spider {
                Some((p, s)) => db
                    .prune_cloud_jobs(&p, &s, retention.jobdata_to_keep)
                    .unwrap_or_default(),
                None => Vec::new(),
            })
        })
        .await
    }

    /// After a restart: the jobs the previous daemon left running (see the backend's
    /// `recover`); `find_orphan` tells whether a job without a pid got its process.
    pub async fn recover(
        &self,
        find_orphan: impl Fn(&JobRecord) -> Option<Orphan> + Send + 'static,
    ) -> Result<Vec<JobRecord>> {
        self.write(CommitOrder::QueuesFirst, move |db| db.recover(&find_orphan))
            .await
    }

    /// Where `job` is (of `project`, or of any of `projects`), and its newest finished record
    /// when it finished.
    pub async fn job_status(
        &self,
        project: Option<String>,
        job: String,
        projects: Vec<String>,
    ) -> Result<(Option<JobState>, Option<JobRecord>)> {
        self.read(move |db| {
            let current = db.job_state(project.as_deref(), &job, &projects)?;
            let finished = match current {
                Some(JobState::Finished) => db.finished_record(project.as_deref(), &job)?,
                _ => None,
            };
            Ok((current, finished))
        })
        .await
        .map(|(_, v)| v)
    }

    /// Pending (of `projects`), running and finished jobs, as of one moment; `only` keeps one
    /// project's running and finished jobs.
    pub async fn snapshot(
        &self,
        projects: Vec<String>,
        only: Option<String>,
    ) -> Result<JobsSnapshot> {
        self.read(move |db| {
            let pending = db.pending(&projects)?;
            let mut running = db.running()?;
            let finished = db.finished(only.as_deref())?;
            if let Some(p) = &only {
                running.retain(|r| r.project == *p);
            }
            Ok(JobsSnapshot {
                pending,
                running,
                finished,
            })
        })
        .await
        .map(|(_, v)| v)
    }

    /// Pending (of `projects`), running and finished counts, with the generation they are of.
    pub async fn counts(&self, projects: Vec<String>) -> Result<(u64, Counts)> {
        self.read(move |db| {
            Ok(Counts {
                pending: db.pending_count(&projects)?,
                running: db.running_count()?,
                finished: db.finished_count()?,
            })
        })
        .await
    }

    /// Pending (of `projects`) and running jobs (of `only`, if given) with the generation and
    /// the finished version they are of.
    pub async fn queue_snapshot(
        &self,
        projects: Vec<String>,
        only: Option<String>,
    ) -> Result<(u64, QueueSnapshot)> {
        self.read(move |db| {
            let pending = db.pending(&projects)?;
            let mut running = db.running()?;
            if let Some(p) = &only {
                running.retain(|r| r.project == *p);
            }
            Ok(QueueSnapshot {
                pending,
                running,
                finished_version: db.finished_version()?,
            })
        })
        .await
    }

    /// What brings a listing of the finished jobs (of `project`, or all) at version `since` up
    /// to date: the changes since, or (when they are not all kept, or `since` is `None`)
    /// everything.
    pub async fn finished_update(
        &self,
        since: Option<u64>,
        project: Option<String>,
    ) -> Result<FinishedUpdate> {
        self.read(move |db| db.finished_update(since, project.as_deref()))
            .await
            .map(|(_, v)| v)
    }

    /// The newest `limit` finished jobs (of `project`, or all), with the finished version.
    pub async fn finished_newest(
        &self,
        project: Option<String>,
        limit: usize,
    ) -> Result<(u64, Vec<FinishedJob>)> {
        self.read(move |db| {
            Ok((
                db.finished_version()?,
                db.finished_newest(project.as_deref(), Some(limit))?,
            ))
        })
        .await
        .map(|(_, v)| v)
    }

    // ---- The Scrapy Cloud registry

    /// The numeric ids of these projects (given on first use), in order.
    pub async fn project_ids(&self, projects: Vec<String>) -> Result<Vec<i64>> {
        self.write(CommitOrder::JobsFirst, move |db| {
            projects.iter().map(|p| db.project_id(p)).collect()
        })
        .await
    }

    /// The numeric id of a project (given on first use).
    pub async fn project_id(&self, project: &str) -> Result<i64> {
        Ok(self.project_ids(vec![project.to_owned()]).await?[0])
    }

    /// The project with this id, among `known` projects (registering them as needed).
    pub async fn project_by_id(&self, id: i64, known: Vec<String>) -> Result<Option<String>> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.project_by_id(id, &known)
        })
        .await
    }

    /// The token of the running job `key` (of one of `known` projects), if it runs.
    pub async fn job_token(&self, key: JobKey, known: Vec<String>) -> Result<Option<String>> {
        self.write(CommitOrder::JobsFirst, move |db| {
            let Some(project) = db.project_by_id(key.project, &known)? else {
                return Ok(None);
            };
            Ok(db
                .cloud_job(&project, key)?
                .filter(|j| j.state == "running")
                .and_then(|j| {
                    j.meta
                        .get("auth")
                        .and_then(|a| a.as_str().map(str::to_owned))
                }))
        })
        .await
    }

    /// The id of a spider of `project`; with `create`, given on first use.
    pub async fn spider_id(
        &self,
        project: &str,
        spider: &str,
        create: bool,
    ) -> Result<Option<i64>> {
        let (p, s) = (project.to_owned(), spider.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            db.spider_id(&p, &s, create)
        })
        .await
    }

    /// The name of spider `id` of `project`.
    pub async fn spider_name(&self, project: &str, id: i64) -> Result<Option<String>> {
        let p = project.to_owned();
        self.read(move |db| db.spider_name(&p, id))
            .await
            .map(|(_, v)| v)
    }

    /// A spider's tags.
    pub async fn spider_tags(&self, project: &str, spider: &str) -> Result<Vec<String>> {
        let (p, s) = (project.to_owned(), spider.to_owned());
        self.read(move |db| db.spider_tags(&p, &s))
            .await
            .map(|(_, v)| v)
    }

    /// Adds and removes tags of a spider; returns its tags.
    pub async fn update_spider_tags(
        &self,
        project: &str,
        spider: &str,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<Vec<String>> {
        let (p, s) = (project.to_owned(), spider.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            db.update_spider_tags(&p, &s, &add, &remove)
        })
        .await
    }

    /// The spiders of a project as the dash lists them: the `deployed` ones (given ids), then
    /// those only the registry knows; each with whether it is deployed and its tags.
    pub async fn spider_listing(
        &self,
        project: &str,
        deployed: Vec<String>,
    ) -> Result<Vec<(String, bool, Vec<String>)>> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            let mut listed = Vec::new();
            for s in &deployed {
                db.spider_id(&p, s, true)?;
                listed.push((s.clone(), true, db.spider_tags(&p, s)?));
            }
            for s in db.registry_spiders(&p)? {
                if !deployed.contains(&s) {
                    let tags = db.spider_tags(&p, &s)?;
                    listed.push((s, false, tags));
                }
            }
            Ok(listed)
        })
        .await
    }

    /// A job by key.
    pub async fn cloud_job(&self, project: &str, key: JobKey) -> Result<Option<CloudJob>> {
        let p = project.to_owned();
        self.read(move |db| db.cloud_job(&p, key))
            .await
            .map(|(_, v)| v)
    }

    /// Jobs of `project` matching a query, newest first.
    pub async fn cloud_jobs(&self, project: &str, query: JobQuery) -> Result<Vec<CloudJob>> {
        Ok(self
            .cloud_jobs_each(project, vec![query])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// The jobs of each query, read in one step.
    pub async fn cloud_jobs_each(
        &self,
        project: &str,
        queries: Vec<JobQuery>,
    ) -> Result<Vec<Vec<CloudJob>>> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            queries.iter().map(|q| db.cloud_jobs(&p, q)).collect()
        })
        .await
    }

    /// Changes the metadata of these jobs in place (those that exist) in one transaction;
    /// returns how many exist.
    pub async fn edit_cloud_meta(
        &self,
        project: &str,
        keys: Vec<JobKey>,
        edit: impl Fn(&mut Map<String, Value>) + Send + 'static,
    ) -> Result<usize> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            let mut n = 0;
            for key in keys {
                if let Some(mut job) = db.cloud_job(&p, key)? {
                    edit(&mut job.meta);
                    db.save_cloud_job(&job)?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    /// Moves a job to `state` (setting its time and user fields and `fields`), or with no
    /// state adds `fields` to its metadata; nothing when the job is gone.
    pub async fn transition_cloud_job(
        &self,
        project: &str,
        key: JobKey,
        state: Option<String>,
        by: &str,
        fields: Map<String, Value>,
    ) -> Result<()> {
        let (p, by) = (project.to_owned(), by.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            let Some(mut job) = db.cloud_job(&p, key)? else {
                return Ok(());
            };
            match state {
                Some(s) => db.transition(&mut job, &s, &by, fields),
                None => {
                    job.meta.extend(fields);
                    db.save_cloud_job(&job)
                }
            }
        })
        .await
    }

    /// Applies the Scrapy Cloud retention to a spider's finished jobs (see `prune_cloud_jobs`
    /// of the backend); returns the keys removed.
    pub async fn prune_cloud_jobs(
        &self,
        project: &str,
        spider: &str,
        keep: usize,
    ) -> Result<Vec<JobKey>> {
        let (p, s) = (project.to_owned(), spider.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            db.prune_cloud_jobs(&p, &s, keep)
        })
        .await
    }

    /// Removes a job's registry row (its data files are the caller's).
    pub async fn purge_cloud_job(&self, project: &str, key: JobKey) -> Result<usize> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            db.delete_cloud_job(&p, key)
        })
        .await
    }

    /// Registers a job that a runner outside scrapyd-rs will take (`state` may move it on at
    /// once), unless it duplicates an active job or names a spider the registry does not know
    /// while `may_add_spider` is false; returns its key and its token (when it runs).
    pub async fn register_external(
        &self,
        project: &str,
        spider: &str,
        meta: Map<String, Value>,
        state: Option<String>,
        may_add_spider: bool,
        unique: Uniqueness,
    ) -> Result<Admission<(JobKey, Option<Value>)>> {
        let (p, s) = (project.to_owned(), spider.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            if !may_add_spider && db.spider_id(&p, &s, false)?.is_none() {
                return Ok(Admission::UnknownSpider);
            }
            if let Some(existing) = db.find_duplicate(&p, &s, &unique, &meta)? {
                return Ok(Admission::Duplicate(existing));
            }
            let key = db.register_external(&p, &s, &meta, state.as_deref())?;
            let auth = db
                .cloud_job(&p, key)?
                .and_then(|j| j.meta.get("auth").cloned());
            Ok(Admission::Admitted((key, auth)))
        })
        .await
    }

    /// Takes the next pending external job of `project` and marks it running (`params` go in
    /// its metadata).
    pub async fn start_external(
        &self,
        project: &str,
        params: Map<String, Value>,
    ) -> Result<Option<CloudJob>> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            db.start_external(&p, params)
        })
        .await
    }

    // ---- Activity and project settings

    /// Appends events to a project's activity log.
    pub async fn add_activity(&self, project: &str, events: Vec<Map<String, Value>>) -> Result<()> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            db.add_activity(&p, &events)
        })
        .await
    }

    /// The newest events of `projects` (merged, newest first), at most `count`.
    pub async fn activity(&self, projects: Vec<String>, count: usize) -> Result<Vec<Event>> {
        self.read(move |db| db.activity(&projects, count))
            .await
            .map(|(_, v)| v)
    }

    /// A project's settings object.
    pub async fn project_settings(&self, project: &str) -> Result<Map<String, Value>> {
        let p = project.to_owned();
        self.read(move |db| db.project_settings(&p))
            .await
            .map(|(_, v)| v)
    }

    /// Replaces a project's settings object.
    pub async fn set_project_settings(
        &self,
        project: &str,
        settings: Map<String, Value>,
    ) -> Result<()> {
        let p = project.to_owned();
        self.write(CommitOrder::JobsFirst, move |db| {
            db.set_project_settings(&p, &settings)
        })
        .await
    }

    /// Removes one key of a project's settings.
    pub async fn delete_project_setting(&self, project: &str, key: &str) -> Result<()> {
        let (p, k) = (project.to_owned(), key.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            let mut settings = db.project_settings(&p)?;
            settings.remove(&k);
            db.set_project_settings(&p, &settings)
        })
        .await
    }

    // ---- Collections

    /// The collections of a project that exist, as `(type, name)`.
    pub async fn collection_list(&self, project: &str) -> Result<Vec<(String, String)>> {
        let p = project.to_owned();
        self.read(move |db| db.collection_list(&p))
            .await
            .map(|(_, v)| v)
    }

    /// A collection's id, if it exists.
    pub async fn collection_id(&self, c: CollectionRef) -> Result<Option<i64>> {
        self.read(move |db| db.collection_id(&c))
            .await
            .map(|(_, v)| v)
    }

    /// Writes records (all or none), creating the collection if needed.
    pub async fn collection_upsert(
        &self,
        c: CollectionRef,
        records: Vec<NewRecord>,
        now: i64,
    ) -> Result<()> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.collection_upsert(&c, &records, now)
        })
        .await
    }

    /// The current record of a key, if visible at `now`.
    pub async fn collection_get(
        &self,
        c: CollectionRef,
        key: String,
        now: i64,
    ) -> Result<Option<StoredRecord>> {
        self.read(move |db| db.collection_get(&c, &key, now))
            .await
            .map(|(_, v)| v)
    }

    /// Deletes keys (all their versions); returns how many existed.
    pub async fn collection_delete_keys(
        &self,
        c: CollectionRef,
        keys: Vec<String>,
    ) -> Result<usize> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.collection_delete_keys(&c, &keys)
        })
        .await
    }

    /// Deletes every type of a collection name; returns how many collections went.
    pub async fn collection_drop(&self, project: &str, name: &str) -> Result<usize> {
        let (p, n) = (project.to_owned(), name.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| db.collection_drop(&p, &n))
            .await
    }

    /// Renames every type of a collection name.
    pub async fn collection_rename(
        &self,
        project: &str,
        from: &str,
        to: &str,
    ) -> Result<RenameOutcome> {
        let (p, f, t) = (project.to_owned(), from.to_owned(), to.to_owned());
        self.write(CommitOrder::JobsFirst, move |db| {
            db.collection_rename(&p, &f, &t)
        })
        .await
    }

    /// One page of a scan.
    pub async fn collection_page(&self, req: PageRequest) -> Result<Vec<StoredRecord>> {
        self.read(move |db| db.collection_page(&req))
            .await
            .map(|(_, v)| v)
    }

    // ---- Frontier

    /// Adds requests to a slot; returns how many fingerprints were new.
    pub async fn frontier_add(&self, s: SlotRef, requests: Vec<NewRequest>) -> Result<usize> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.frontier_add(&s, &requests)
        })
        .await
    }

    /// The frontiers of a project.
    pub async fn frontier_names(&self, project: &str) -> Result<Vec<String>> {
        let p = project.to_owned();
        self.read(move |db| db.frontier_names(&p))
            .await
            .map(|(_, v)| v)
    }

    /// The slots of a frontier.
    pub async fn frontier_slots(&self, project: &str, frontier: &str) -> Result<Vec<String>> {
        let (p, f) = (project.to_owned(), frontier.to_owned());
        self.read(move |db| db.frontier_slots(&p, &f))
            .await
            .map(|(_, v)| v)
    }

    /// A slot's id, if it exists.
    pub async fn frontier_slot_id(&self, s: SlotRef) -> Result<Option<i64>> {
        self.read(move |db| db.frontier_slot_id(&s))
            .await
            .map(|(_, v)| v)
    }

    /// Queued batches of a slot after batch `after`, at most `limit`.
    pub async fn frontier_batches(
        &self,
        slot: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<Batch>> {
        self.read(move |db| db.frontier_batches(slot, after, limit))
            .await
            .map(|(_, v)| v)
    }

    /// Deletes batches of a slot by id; returns how many were deleted.
    pub async fn frontier_delete_batches(&self, s: SlotRef, ids: Vec<(i64, i64)>) -> Result<usize> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.frontier_delete_batches(&s, &ids)
        })
        .await
    }

    /// A slot's fingerprints after `from`, at most `limit`.
    pub async fn frontier_fingerprints(
        &self,
        slot: i64,
        from: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>> {
        self.read(move |db| db.frontier_fingerprints(slot, from.as_deref(), limit))
            .await
            .map(|(_, v)| v)
    }

    /// Deletes a slot with its fingerprints and queue.
    pub async fn frontier_delete_slot(&self, s: SlotRef) -> Result<()> {
        self.write(CommitOrder::JobsFirst, move |db| {
            db.frontier_delete_slot(&s)
        })
        .await
    }

    /// Records a job's end without moving the write generation (as if a reader ran between the
    /// finish and the generation's change), for the listing's tests.
    #[cfg(test)]
    pub(crate) async fn finish_unannounced(&self, id: i64, ending: Ending, keep: usize) {
        let Storage::Sqlite(db) = self else {
            panic!("the listing's tests run on SQLite");
        };
        db.read(move |db| db.write(CommitOrder::JobsFirst, |db| db.finish(id, &ending, keep)))
            .await
            .map(|_| ())
            .expect("finish");
    }
}
