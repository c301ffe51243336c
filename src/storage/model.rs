//! What the storage layer stores and answers, as plain Rust types: no database type appears
//! here, so both backends read and write the same values and every caller outside
//! [`crate::storage`] sees only these.
//!
//! - Scrapyd's side: [`PendingJob`] (a queued job), [`JobRecord`] (a running or finished job),
//!   [`Ending`] (how it ended), [`FinishedJob`] (a finished job as listed).
//! - The Scrapy Cloud registry: [`JobKey`], [`CloudJob`], [`JobQuery`].
//! - Collections ([`CollectionRef`], [`StoredRecord`], …), frontier slots ([`SlotRef`],
//!   [`Batch`], …) and activity events ([`Event`]).
//!
//! Times are microseconds since the epoch on Scrapyd's side and milliseconds on Scrapy Cloud's.

use chrono::{DateTime, Local, NaiveDateTime};
use serde_json::{Map, Value};

// ---- Scrapyd's jobs

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Finished,
}

impl JobState {
    /// The word Scrapyd uses.
    /// The state a job row's `state` column holds (`running` or `finished`).
    pub fn of_row(state: &str) -> JobState {
        if state == "running" {
            JobState::Running
        } else {
            JobState::Finished
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Finished => "finished",
        }
    }
}

/// How a finished job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Finished,
    /// Non-zero exit code.
    Failed,
    /// Stopped by a cancel.
    Cancelled,
    /// Ended by a signal nobody sent through the API.
    Killed,
    /// The daemon stopped while it ran, or lost track of it.
    Lost,
    /// Its process could not be started.
    LaunchFailed,
}

impl Outcome {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Finished => "finished",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Killed => "killed",
            Outcome::Lost => "lost",
            Outcome::LaunchFailed => "launch-failed",
        }
    }
}

/// The crawl of a job recorded as running without a pid, found after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// Its process runs on: `pid`, and its identity (see [`crate::process::identity`]).
    Running { pid: u32, identity: String },
    /// It ran and ended: its runner left its result file.
    Ended,
}

/// A running or finished job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Row id (unique, unlike job ids which Scrapyd lets clients reuse).
    pub id: i64,
    pub project: String,
    pub spider: String,
    pub job: String,
    pub version: Option<String>,
    pub settings: Vec<(String, String)>,
    pub args: Vec<(String, String)>,
    pub priority: f64,
    pub state: JobState,
    pub pid: Option<u32>,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    /// Scrapy's finish reason (`finished`, `shutdown`, `closespider_timeout`, …).
    pub finish_reason: Option<String>,
    /// Identity of the crawl process (boot id and start time), to re-adopt it after a restart.
    pub proc_start: Option<String>,
    /// The node that runs (or ran) it, on a cluster; `None` on a single node.
    pub node: Option<String>,
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn local(micros: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .with_timezone(&Local)
        .naive_local()
}

/// Local wall-clock time of a timestamp.
pub fn local_time(micros: i64) -> NaiveDateTime {
    local(micros)
}

/// Python's `str(datetime)` of the local time: `2026-11-22 06:01:25.758439`, without the
/// fraction when it is zero.
pub fn format_time(micros: i64) -> String {
    let t = local(micros);
    if t.and_utc().timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

/// One change to the set of finished jobs, by row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishedChange {
    /// A job finished.
    Added(i64),
    /// A finished job was removed (beyond `finished_to_keep`).
    Removed(i64),
}

impl FinishedChange {
    /// The rows that these changes added (to read them).
    pub fn added(changes: &[FinishedChange]) -> Vec<i64> {
        changes
            .iter()
            .filter_map(|c| match c {
                FinishedChange::Added(id) => Some(*id),
                FinishedChange::Removed(_) => None,
            })
            .collect()
    }
}

/// How a finished job ended, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ended {
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub finish_reason: Option<String>,
    /// The node that ran it (on a cluster; `None` on a single node).
    pub node: Option<String>,
}

impl JobRecord {
    /// The record of a job just taken off its queue to run (row `id`, from `now`).
    pub fn running(id: i64, p: &PendingJob, now: i64) -> JobRecord {
        JobRecord {
            id,
            project: p.project.clone(),
            spider: p.spider.clone(),
            job: p.job.clone(),
            version: p.version.clone(),
            settings: p.settings.clone(),
            args: p.args.clone(),
            priority: p.priority,
            state: JobState::Running,
            pid: None,
            start_time: now,
            end_time: None,
            exit_code: None,
            signal: None,
            outcome: None,
            reason: None,
            finish_reason: None,
            proc_start: None,
            node: None,
        }
    }

    /// How the job ended (all `None` while it runs).
    pub fn ended(&self) -> Ended {
        Ended {
            outcome: self.outcome.clone(),
            exit_code: self.exit_code,
            signal: self.signal,
            finish_reason: self.finish_reason.clone(),
            node: self.node.clone(),
        }
    }
}

/// A finished job as the listing shows it.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    /// The row id (the listing follows rows by it, see [`FinishedLog`]).
    pub id: i64,
    pub project: String,
    pub spider: String,
    pub job: String,
    pub start_time: i64,
    pub end_time: i64,
    pub ending: Ended,
}

/// How a job ended, as recorded.
#[derive(Debug, Clone)]
pub struct Ending {
    pub end_time: i64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Scrapy's finish reason, from the runner's result file.
    pub finish_reason: Option<String>,
    /// Scrapy's final stats (JSON), from the runner's result file.
    pub stats: Option<String>,
}

/// A job waiting in a spider queue.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    pub project: String,
    pub spider: String,
    pub job: String,
    pub priority: f64,
    /// `_version` as given at schedule time.
    pub version: Option<String>,
    /// `setting=K=V` pairs, in request order.
    pub settings: Vec<(String, String)>,
    /// Spider arguments, in request order.
    pub args: Vec<(String, String)>,
    /// When it was scheduled (µs since the epoch); 0 for jobs queued by Scrapyd.
    pub created: i64,
}

impl PendingJob {
    /// A job of `spider` in `project` as a plain `schedule.json` queues it: priority 0, the
    /// project's latest version, no settings or arguments, scheduled now.
    pub fn new(project: &str, spider: &str, job: &str) -> PendingJob {
        PendingJob {
            project: project.into(),
            spider: spider.into(),
            job: job.into(),
            priority: 0.0,
            version: None,
            settings: Vec::new(),
            args: Vec::new(),
            created: crate::storage::model::now_micros(),
        }
    }

    /// Scrapyd's queued message: `{"settings": {…}, "_job": id, <args…>, ["_version": v,] "name": spider}`.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert(
            "settings".into(),
            Value::Object(pairs_to_map(&self.settings)),
        );
        m.insert("_job".into(), Value::String(self.job.clone()));
        for (k, v) in &self.args {
            m.entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        if let Some(v) = &self.version {
            m.insert("_version".into(), Value::String(v.clone()));
        }
        m.insert("name".into(), Value::String(self.spider.clone()));
        crate::pyjson::to_vec(&Value::Object(m))
    }

    /// Reads a queued message back.
    pub fn from_message(
        project: &str,
        priority: f64,
        created: i64,
        message: &[u8],
    ) -> Option<PendingJob> {
        let Value::Object(m) = serde_json::from_slice(message).ok()? else {
            return None;
        };
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut job = PendingJob {
            project: project.to_owned(),
            spider: String::new(),
            job: String::new(),
            priority,
            version: None,
            settings: Vec::new(),
            args: Vec::new(),
            created,
        };
        for (k, v) in m {
            match k.as_str() {
                "name" => job.spider = text(&v),
                "_job" => job.job = text(&v),
                "_version" => job.version = Some(text(&v)),
                "settings" => {
                    if let Value::Object(s) = v {
                        job.settings = s.iter().map(|(k, v)| (k.clone(), text(v))).collect();
                    }
                }
                _ => job.args.push((k, text(&v))),
            }
        }
        (!job.spider.is_empty()).then_some(job)
    }
}

/// Pairs as a JSON object (first value of a repeated key wins).
pub fn pairs_to_map(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.entry(k.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    m
}

/// The job views read in one step: the listing's pending, running and finished jobs.
#[derive(Debug, Clone)]
pub struct JobsSnapshot {
    pub pending: Vec<PendingJob>,
    pub running: Vec<JobRecord>,
    pub finished: Vec<JobRecord>,
}

/// `daemonstatus.json`'s counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub pending: usize,
    pub running: usize,
    pub finished: usize,
}

/// Pending and running jobs as of one moment, with the finished version of that moment.
#[derive(Debug, Clone)]
pub struct QueueSnapshot {
    pub pending: Vec<PendingJob>,
    pub running: Vec<JobRecord>,
    pub finished_version: u64,
}

/// What brings a listing of the finished jobs to a new version.
#[derive(Debug, Clone)]
pub enum FinishedUpdate {
    /// Every finished job of the listing's filter.
    All(u64, Vec<FinishedJob>),
    /// The changes since the listing's version, and the rows of the jobs they added (those
    /// still kept).
    Changes(u64, Vec<FinishedChange>, Vec<FinishedJob>),
}

/// A job taken off the queue to run, with what the Scrapy Cloud registry adds to its launch.
#[derive(Debug, Clone)]
pub struct Claim {
    pub record: JobRecord,
    /// What its registry entry adds to its launch, if it has one.
    pub registry: Option<RegistryLaunch>,
}

/// What a job's registry entry adds to its launch: its key, and the environment variables the
/// client that made it asked for (`run.json`'s `environment`).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryLaunch {
    pub key: JobKey,
    pub environment: Vec<(String, String)>,
}

/// How many finished jobs are kept: Scrapyd's rows (`finished_to_keep`), and per spider the
/// Scrapy Cloud jobs with their data (`jobdata_to_keep`, 0 = all).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub finished_to_keep: usize,
    pub jobdata_to_keep: usize,
}

// ---- The Scrapy Cloud registry

/// Ids given to projects whose names are not numbers start here (names that are numbers below
/// it keep their number).
pub const FIRST_ALLOCATED_PROJECT_ID: i64 = 1_000_000_000;

/// A job key `project/spider/n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub project: i64,
    pub spider: i64,
    pub n: i64,
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.spider, self.n)
    }
}

impl JobKey {
    /// Parses `p/s/n` (three decimal numbers).
    pub fn parse(text: &str) -> Option<JobKey> {
        let mut parts = text.split('/');
        let mut next = || parts.next().and_then(parse_id);
        let key = JobKey {
            project: next()?,
            spider: next()?,
            n: next()?,
        };
        parts.next().is_none().then_some(key)
    }
}

/// A decimal id as Scrapy Cloud writes them (no sign, no leading zero, fits in 53 bits).
pub fn parse_id(text: &str) -> Option<i64> {
    crate::names::decimal_id(text)
}

/// Project and spider ids already read (ids never change once given).
#[derive(Debug, Clone)]
pub struct CloudJob {
    pub key: JobKey,
    /// The Scrapyd project name and job id.
    pub project: String,
    pub job: String,
    pub spider: String,
    pub state: String,
    /// Milliseconds of the last state change.
    pub ts: i64,
    pub meta: Map<String, Value>,
}

/// Creates the registry tables if needed.
/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    now_micros() / 1000
}

/// Scrapy Cloud's `close_reason` for how a job ended.
pub fn close_reason(ending: &Ending) -> String {
    match ending.outcome {
        Outcome::Finished => ending
            .finish_reason
            .clone()
            .unwrap_or_else(|| "finished".into()),
        Outcome::Cancelled | Outcome::Killed => "cancelled".into(),
        Outcome::Failed | Outcome::LaunchFailed => "failed".into(),
        Outcome::Lost => "lost".into(),
    }
}

#[derive(Debug, Default, Clone)]
pub struct JobQuery {
    pub states: Vec<String>,
    pub spider_id: Option<i64>,
    /// A spider by name (a name the registry does not know selects nothing).
    pub spider: Option<String>,
    pub has_tag: Vec<String>,
    pub lacks_tag: Vec<String>,
    pub startts: Option<i64>,
    pub endts: Option<i64>,
    pub keys: Vec<JobKey>,
    pub skip: usize,
    pub count: Option<usize>,
    pub stop: Option<JobKey>,
}

/// A JSON object as name-value text pairs (a string is its text, anything else its JSON): a
/// crawl's environment, `-s NAME=VALUE` settings, `-a` arguments.
pub fn string_pairs(map: &Map<String, Value>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// A job's tags.
pub fn tags_of(meta: &Map<String, Value>) -> Vec<String> {
    match meta.get("tags") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Adds `add` (once each) and removes `remove` from `tags`.
pub fn apply_tags(tags: &mut Vec<String>, add: &[String], remove: &[String]) {
    for t in add {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags.retain(|t| !remove.contains(t));
}

/// What makes a new job the duplicate of an active (pending or running) one.
#[derive(Debug, Clone, Default)]
pub enum Uniqueness {
    /// The same spider with the same arguments (`run.json`, as Scrapy Cloud's dash).
    SameArguments,
    /// The same `unique` metadata value (`jobq/<p>/push`).
    Value(Value),
    /// Nothing.
    #[default]
    None,
}

/// A job to queue: its queue entry, the metadata its registry entry starts with (tags, the
/// version that will run, a client's own keys), and the active jobs it must not duplicate.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job: PendingJob,
    pub meta: Map<String, Value>,
    pub unique: Uniqueness,
}

impl From<PendingJob> for NewJob {
    fn from(job: PendingJob) -> NewJob {
        NewJob {
            job,
            meta: Map::new(),
            unique: Uniqueness::None,
        }
    }
}

/// What a job that must not duplicate an active one got.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission<T> {
    /// Stored.
    Admitted(T),
    /// Refused: this active (pending or running) job has the same [`Uniqueness`].
    Duplicate(JobKey),
    /// Refused: the spider is not one the registry knows, and no new one may be added.
    UnknownSpider,
}

// ---- Collections

/// Versions kept per key by the versioned types (the newest one included).
pub const VERSIONS_KEPT: i64 = 3;

/// How long a record of a cached type lives: 30 days, in ms.
pub const CACHE_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// How often at most the expired records of a cached collection are purged (on a write).
pub const PURGE_INTERVAL_MS: i64 = 60 * 60 * 1000;

/// The four collection types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionType {
    Store,
    CachedStore,
    VersionedStore,
    VersionedCachedStore,
}

impl CollectionType {
    /// The type of a path segment (`s`, `cs`, `vs`, `vcs`).
    pub fn parse(code: &str) -> Option<CollectionType> {
        Some(match code {
            "s" => CollectionType::Store,
            "cs" => CollectionType::CachedStore,
            "vs" => CollectionType::VersionedStore,
            "vcs" => CollectionType::VersionedCachedStore,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            CollectionType::Store => "s",
            CollectionType::CachedStore => "cs",
            CollectionType::VersionedStore => "vs",
            CollectionType::VersionedCachedStore => "vcs",
        }
    }

    pub fn versioned(self) -> bool {
        matches!(
            self,
            CollectionType::VersionedStore | CollectionType::VersionedCachedStore
        )
    }

    pub fn cached(self) -> bool {
        matches!(
            self,
            CollectionType::CachedStore | CollectionType::VersionedCachedStore
        )
    }

    /// The oldest write time still visible at `now` (records of other types never expire).
    pub fn visible_since(self, now: i64) -> i64 {
        if self.cached() {
            now - CACHE_RETENTION_MS
        } else {
            i64::MIN
        }
    }
}

#[derive(Debug, Clone)]
pub struct CollectionRef {
    pub project: String,
    pub kind: CollectionType,
    pub name: String,
}

/// A record to write: its key and its value (the JSON object without `_key`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub key: String,
    pub value: String,
}

/// A stored record: key, write time (ms) and value (a JSON object's text, without `_key`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub key: String,
    pub ts: i64,
    pub value: String,
}

/// The records of a write body (JSON lines of objects with a `_key`); the first bad line
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    Renamed,
    /// No collection of any type has the old name.
    NotFound,
    /// A collection of some type already has the new name.
    Taken,
}

/// One page of a scan: exact keys, or the keys from a bound on, in order.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub collection: i64,
    /// Exact keys (sorted); `None`: a key range starting at `from`.
    pub keys: Option<Vec<String>>,
    /// The first key of the range and whether it is included (`None`: from the first key).
    pub from: Option<(String, bool)>,
    /// Write times in `[min_ts, max_ts)`.
    pub min_ts: i64,
    pub max_ts: i64,
    pub limit: usize,
}

// ---- Frontier

/// Most requests in one batch.
pub const BATCH_SIZE: usize = 100;

/// One slot: a Scrapyd project, a frontier and a slot name.
#[derive(Debug, Clone)]
pub struct SlotRef {
    pub project: String,
    pub frontier: String,
    pub slot: String,
}

/// A request to add: its fingerprint, queue data and fingerprint data (JSON texts), priority.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    pub fp: String,
    pub qdata: Option<String>,
    pub fdata: Option<String>,
    pub priority: i64,
}

/// A queued batch: its number in the slot, priority, and requests (`fp`, `qdata` JSON text).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub priority: i64,
    pub requests: Vec<(String, Option<String>)>,
}

// ---- Activity

/// Events kept per project (at least: the log is trimmed every [`TRIM_EVERY`] events).
pub const ACTIVITY_TO_KEEP: i64 = 10_000;

/// An event as stored: its time and the event object.
#[derive(Debug, Clone)]
pub struct Event {
    pub ts: i64,
    pub project: String,
    pub event: Map<String, Value>,
}

/// Groups requests into batches: by priority (lowest first), in the order given, at most
/// [`BATCH_SIZE`] each.
pub fn plan_batches(requests: Vec<NewRequest>) -> Vec<(i64, Vec<NewRequest>)> {
    let mut by_priority: std::collections::BTreeMap<i64, Vec<NewRequest>> = Default::default();
    for r in requests {
        by_priority.entry(r.priority).or_default().push(r);
    }
    let mut out = Vec::new();
    for (priority, requests) in by_priority {
        let mut rest = requests.into_iter().peekable();
        while rest.peek().is_some() {
            out.push((priority, rest.by_ref().take(BATCH_SIZE).collect()));
        }
    }
    out
}

// ---- Nodes

/// What a node registers: its name, how other nodes reach it, its `max_proc`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub url: String,
    pub max_proc: usize,
}

/// The answer to a node's registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// Registered with this number (every later write of the node carries it).
    Registered(i64),
    /// A node of this name beat within `node_timeout`, last at this database time (µs since
    /// the epoch).
    Alive(i64),
}

/// A node as `listnodes.json` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub name: String,
    pub url: String,
    pub alive: bool,
    pub running: usize,
    pub max_proc: usize,
    /// When it registered and when it last beat, as Python's `str(datetime)` in local time.
    pub started: String,
    pub heartbeat: String,
}

/// A job a dead node left running, recorded `lost` by another node.
#[derive(Debug, Clone, PartialEq)]
pub struct LostJob {
    pub node: String,
    pub project: String,
    pub job: String,
}

// ---- Eggs (of a cluster: on SQLite they are files under `eggs_dir`)

/// An egg version as the cluster's database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedEgg {
    pub project: String,
    pub version: String,
    /// SHA-256 of the egg's bytes (hex).
    pub sha256: String,
    pub spiders: Vec<String>,
}

/// An extra egg (a dependency) of a project as the cluster's database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedExtraEgg {
    pub project: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// Every egg of the cluster, with the egg version it is of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EggIndex {
    pub version: u64,
    pub eggs: Vec<SharedEgg>,
    pub extras: Vec<SharedExtraEgg>,
}

/// The hex SHA-256 of some bytes (how the cluster's database keys eggs).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cancel of a crawl asked for through another node: the `count`th, with `signal`.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelRequest {
    /// The job's row id.
    pub id: i64,
    pub count: u32,
    pub signal: String,
}

/// The node that ran (or runs) a job, as another node reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobNode {
    pub name: String,
    pub url: String,
    pub alive: bool,
}
