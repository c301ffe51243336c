//! [`Rows`]: what one transaction of a backend can read and write, row by row. Each backend
//! writes these in its own SQL (SQLite's per-project queue files and `jobs.db`; PostgreSQL's
//! one shared schema); everything built from them — the job lifecycle
//! ([`super::lifecycle::Lifecycle`]) and the Scrapy Cloud registry
//! ([`super::registry::Registry`]) — is written once, on top, and runs inside the same
//! transaction. No method here emits a job event: the lifecycle does.

use super::StorageError;
use super::model::*;
use serde_json::{Map, Value};

type Result<T> = std::result::Result<T, StorageError>;

/// The row operations of one open transaction (see the module's documentation), in one trait
/// per table group so that each backend writes them module by module.
pub trait Rows:
    QueueRows + JobRows + RegistryRows + ActivityRows + CollectionRows + FrontierRows
{
}

impl<T> Rows for T where
    T: QueueRows + JobRows + RegistryRows + ActivityRows + CollectionRows + FrontierRows + ?Sized
{
}

/// The queue of pending jobs.
pub trait QueueRows {
    /// Adds a job to its project's queue.
    fn queue_insert(&mut self, job: &PendingJob) -> Result<()>;
    /// Takes off its queue the job that should start next among `projects` (highest priority,
    /// then oldest), dropping unreadable entries; on a shared queue, never one another
    /// transaction has taken.
    fn queue_take_next(&mut self, projects: &[String]) -> Result<Option<PendingJob>>;
    /// Removes every queue entry of `project` with this job id; returns how many.
    fn queue_remove(&mut self, project: &str, job: &str) -> Result<usize>;
    /// Removes every queue entry of `project`; returns how many, and the jobs they held.
    fn queue_clear(&mut self, project: &str) -> Result<(usize, Vec<String>)>;
    /// The pending jobs of `projects`, each project's in start order.
    fn pending(&mut self, projects: &[String]) -> Result<Vec<PendingJob>>;
    /// How many jobs wait in `projects`.
    fn pending_count(&mut self, projects: &[String]) -> Result<usize>;
    /// Whether `job` waits in `project`'s queue.
    fn is_pending(&mut self, project: &str, job: &str) -> Result<bool>;
    /// Takes a lock held until the transaction ends, so that two transactions admitting jobs
    /// of `project` (each checking for duplicates first) run one after the other.
    fn lock_admission(&mut self, project: &str) -> Result<()>;
}

/// A row per job from its start (`running`) to its end (`finished`).
pub trait JobRows {
    /// Records a job as running (on this node), from `now`.
    fn insert_running(&mut self, job: &PendingJob, now: i64) -> Result<JobRecord>;
    /// Records the pid and process identity of a running job.
    fn set_pid(&mut self, id: i64, pid: u32, proc_start: Option<&str>) -> Result<()>;
    /// The project and spider of a job row.
    fn job_spider(&mut self, id: i64) -> Result<Option<(String, String)>>;
    /// Records the end of a running job and keeps only the newest `keep` finished jobs;
    /// returns the job's project and id when it was running (nothing changes otherwise).
    fn record_end(
        &mut self,
        id: i64,
        ending: &Ending,
        keep: usize,
    ) -> Result<Option<(String, String)>>;
    /// Removes a job row.
    fn delete_job(&mut self, id: i64) -> Result<()>;
    /// Jobs recorded as running (in start order), on every node.
    fn running(&mut self) -> Result<Vec<JobRecord>>;
    /// Jobs recorded as running on this node (what a restart of it recovers).
    fn running_here(&mut self) -> Result<Vec<JobRecord>>;
    /// How many jobs are recorded as running on this node (on one node: all of them).
    fn running_count(&mut self) -> Result<usize>;
    /// Finished jobs (of `project`, or all), newest first.
    fn finished(&mut self, project: Option<&str>) -> Result<Vec<JobRecord>>;
    /// How many finished jobs this node ran are kept (on one node: all of them).
    fn finished_count(&mut self) -> Result<usize>;
    /// The `limit` newest finished jobs (all when `None`), newest first, with only what the
    /// listing shows.
    fn finished_newest(
        &mut self,
        project: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FinishedJob>>;
    /// The newest finished run of a job id.
    fn finished_record(&mut self, project: Option<&str>, job: &str) -> Result<Option<JobRecord>>;
    /// The current version of the finished jobs.
    fn finished_version(&mut self) -> Result<u64>;
    /// What brings a listing of the finished jobs at version `since` up to date.
    fn finished_update(
        &mut self,
        since: Option<u64>,
        project: Option<&str>,
    ) -> Result<FinishedUpdate>;
    /// The state of a job row of this id (of `project`, or any): `finished` before `running`.
    fn job_row_state(&mut self, project: Option<&str>, job: &str) -> Result<Option<JobState>>;
}

/// The Scrapy Cloud registry's rows: project and spider ids, a row per job.
pub trait RegistryRows {
    /// The numeric id of a project, given on first use (see `registry.rs` for the rule).
    fn project_id(&mut self, name: &str) -> Result<i64>;
    /// The project registered with this id.
    fn project_named(&mut self, id: i64) -> Result<Option<String>>;
    /// The id of a spider of `project`; with `create`, given on first use (1, 2, …).
    fn spider_id(&mut self, project: &str, spider: &str, create: bool) -> Result<Option<i64>>;
    /// The spiders the registry knows for `project`, by id.
    fn registry_spiders(&mut self, project: &str) -> Result<Vec<String>>;
    /// The name of spider `id` of `project`.
    fn spider_name(&mut self, project: &str, id: i64) -> Result<Option<String>>;
    /// A spider's tags.
    fn spider_tags(&mut self, project: &str, spider: &str) -> Result<Vec<String>>;
    /// Replaces a spider's tags (the spider has an id).
    fn set_spider_tags(&mut self, project: &str, spider: &str, tags: &[String]) -> Result<()>;
    /// The next job number of a spider (1, 2, …; each given once).
    fn next_job_number(&mut self, project: &str, spider_id: i64) -> Result<i64>;
    /// Adds a job's registry row.
    fn insert_cloud_job(&mut self, job: &CloudJob) -> Result<()>;
    /// The newest registry row of a Scrapyd job.
    fn cloud_job_of(&mut self, project: &str, job: &str) -> Result<Option<CloudJob>>;
    /// A registry row by key.
    fn cloud_job(&mut self, project: &str, key: JobKey) -> Result<Option<CloudJob>>;
    /// Writes a row's state, ts and metadata.
    fn save_cloud_job(&mut self, job: &CloudJob) -> Result<()>;
    /// Visits the rows of `project` in `states` (all when empty), of spider `spider_id` (all
    /// when `None`), with `startts <= ts < endts`, newest first, until `visit` says stop.
    fn visit_cloud_jobs(
        &mut self,
        project: &str,
        states: &[String],
        spider_id: Option<i64>,
        ts: (Option<i64>, Option<i64>),
        visit: &mut dyn FnMut(CloudJob) -> bool,
    ) -> Result<()>;
    /// The numbers of a spider's finished (and deleted) jobs beyond the newest `keep`.
    fn cloud_jobs_beyond(&mut self, project: &str, spider_id: i64, keep: usize)
    -> Result<Vec<i64>>;
    /// Removes a registry row; returns how many went.
    fn delete_cloud_job(&mut self, project: &str, key: JobKey) -> Result<usize>;
}

/// A project's activity log and settings object.
pub trait ActivityRows {
    /// Appends events to a project's activity log (keeping the newest [`ACTIVITY_TO_KEEP`]).
    fn add_activity(&mut self, project: &str, events: &[Map<String, Value>]) -> Result<()>;
    /// The newest events of `projects` (merged, newest first), at most `count`.
    fn activity(&mut self, projects: &[String], count: usize) -> Result<Vec<Event>>;
    /// A project's settings object (see [`new_project_settings`] for one never written).
    fn project_settings(&mut self, project: &str) -> Result<Map<String, Value>>;
    /// Replaces a project's settings object.
    fn set_project_settings(&mut self, project: &str, settings: &Map<String, Value>) -> Result<()>;
}

/// Collections (the rules: `crate::cloud::collections`).
pub trait CollectionRows {
    /// The collections of a project that exist, as `(type, name)`, by name then type.
    fn collection_list(&mut self, project: &str) -> Result<Vec<(String, String)>>;
    /// A collection's id, if it exists.
    fn collection_id(&mut self, c: &CollectionRef) -> Result<Option<i64>>;
    /// Writes records, creating the collection if needed (purging expired records of cached
    /// types at most once per [`PURGE_INTERVAL_MS`]; keeping older versions of versioned ones).
    fn collection_upsert(
        &mut self,
        c: &CollectionRef,
        records: &[NewRecord],
        now: i64,
    ) -> Result<()>;
    /// The current record of a key, if visible at `now`.
    fn collection_get(
        &mut self,
        c: &CollectionRef,
        key: &str,
        now: i64,
    ) -> Result<Option<StoredRecord>>;
    /// The older versions of a key (newest first), for versioned types (kept as Scrapy Cloud
    /// keeps them; no endpoint reads them, the unit tests do).
    #[cfg(test)]
    fn collection_versions(&mut self, c: &CollectionRef, key: &str) -> Result<Vec<StoredRecord>>;
    /// Deletes keys (all their versions); returns how many existed.
    fn collection_delete_keys(&mut self, c: &CollectionRef, keys: &[String]) -> Result<usize>;
    /// Deletes every type of a collection name; returns how many collections went.
    fn collection_drop(&mut self, project: &str, name: &str) -> Result<usize>;
    /// Whether a project has a collection of this name (of any type).
    fn collection_name_exists(&mut self, project: &str, name: &str) -> Result<bool>;
    /// Gives every type of a collection name another name.
    fn collection_set_name(&mut self, project: &str, from: &str, to: &str) -> Result<()>;
    /// Renames every type of a collection name: `NotFound` when there is none, `Taken` when
    /// the new name has a collection already (nothing moves then).
    fn collection_rename(&mut self, project: &str, from: &str, to: &str) -> Result<RenameOutcome> {
        if !self.collection_name_exists(project, from)? {
            return Ok(RenameOutcome::NotFound);
        }
        if from == to {
            return Ok(RenameOutcome::Renamed);
        }
        if self.collection_name_exists(project, to)? {
            return Ok(RenameOutcome::Taken);
        }
        self.collection_set_name(project, from, to)?;
        Ok(RenameOutcome::Renamed)
    }
    /// One page of a scan, by key.
    fn collection_page(&mut self, req: &PageRequest) -> Result<Vec<StoredRecord>>;
}

/// Frontier slots (the rules: `crate::cloud::frontier`).
pub trait FrontierRows {
    /// Adds requests to a slot (new fingerprints recorded, their requests queued in the
    /// batches [`plan_batches`] makes); returns how many fingerprints were new.
    fn frontier_add(&mut self, s: &SlotRef, requests: &[NewRequest]) -> Result<usize>;
    /// The frontiers of a project that have slots, by name.
    fn frontier_names(&mut self, project: &str) -> Result<Vec<String>>;
    /// The slots of a frontier, by name.
    fn frontier_slots(&mut self, project: &str, frontier: &str) -> Result<Vec<String>>;
    /// A slot's id, if it exists.
    fn frontier_slot_id(&mut self, s: &SlotRef) -> Result<Option<i64>>;
    /// Up to `limit` queued batches of a slot after `(priority, batch)`, in queue order.
    fn frontier_batches(
        &mut self,
        slot: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<Batch>>;
    /// Deletes queued batches of a slot by `(priority, batch)`; returns how many went.
    fn frontier_delete_batches(&mut self, s: &SlotRef, ids: &[(i64, i64)]) -> Result<usize>;
    /// Up to `limit` fingerprints of a slot after `after`, in order, with their `fdata`.
    fn frontier_fingerprints(
        &mut self,
        slot: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>>;
    /// Deletes a slot with its fingerprints and queue.
    fn frontier_delete_slot(&mut self, s: &SlotRef) -> Result<()>;
}

/// The settings of a project that never wrote its own: the keys clients read, empty.
pub fn new_project_settings() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("botgroups".into(), Value::Array(Vec::new()));
    m
}

/// The `older` column of a versioned record after a write replaced the version `(ts, value)`:
/// that version first, then the older ones, [`VERSIONS_KEPT`] - 1 at most.
pub fn push_version(older: Option<&str>, ts: i64, value: &str) -> String {
    let mut versions: Vec<Value> = older
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    let value: Value = serde_json::from_str(value).unwrap_or(Value::Null);
    versions.insert(0, serde_json::json!({"ts": ts, "value": value}));
    versions.truncate((VERSIONS_KEPT - 1) as usize);
    Value::Array(versions).to_string()
}

/// The versions an `older` column holds.
#[cfg(test)]
pub fn versions_of(older: Option<&str>, key: &str) -> Vec<StoredRecord> {
    let versions: Vec<Value> = older
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    versions
        .iter()
        .map(|v| StoredRecord {
            key: key.to_owned(),
            ts: v["ts"].as_i64().unwrap_or(0),
            value: v["value"].to_string(),
        })
        .collect()
}

/// A job's settings or arguments as stored in a job row (a JSON array of pairs).
pub fn pairs_json(pairs: &[(String, String)]) -> String {
    serde_json::to_string(&Value::Array(
        pairs
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect(),
    ))
    .unwrap_or_else(|_| "[]".into())
}

/// The pairs of a job row's settings or arguments column.
pub fn json_pairs(text: &str) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<(String, String)>>(text).unwrap_or_default()
}
