//! The jobs listing — `listjobs.json` and `daemonstatus.json`'s counts — as a read model over
//! the store.
//!
//! - **Counts, pending and running** are read from SQLite and rendered to JSON once per store
//!   write generation and set of known projects ([`crate::storage::Storage::generation`]): while
//!   neither changed, a request reuses them, and any write makes the next request read again.
//! - **Finished jobs** (up to `finished_to_keep`, which may be 100 000) are followed by the
//!   finished version instead ([`crate::storage::Storage::finished_version`]), which changes only
//!   when a job finishes or a finished job is removed. A [`FinishedView`] brings its rendered
//!   array up to date from the numbered changes since its version
//!   ([`crate::storage::model::FinishedLog`]): a finished job is rendered once and put in front, removed
//!   jobs are cut from the back, and the array is sent as a few large segments without a copy.
//!   What it cannot follow (a change log it fell behind, an order it does not expect) it reads
//!   and renders again in full.
//! - **One moment.** The pending and running read notes the finished version it saw, and the
//!   `finished` array sent with it must be of that version (else pending and running are read
//!   again), so a job that just finished is never listed both running and finished.
//! - **Log and items links** cannot be cached blindly: crawls create the files, `jobs_to_keep`
//!   and users delete them. Each request reads each spider's folder once (not one `stat` per
//!   job); when a folder changed, only the entries whose files came or went are rendered again,
//!   with all the newer entries before them (the files that go are the oldest of the newest few,
//!   so this is a short prefix).

use crate::config::Config;
use crate::storage::model::{
    Counts, Ended, FinishedChange, FinishedJob, FinishedUpdate, JobRecord, QueueSnapshot,
    format_time,
};
use crate::storage::model::{PendingJob, pairs_to_map};
use crate::storage::{Storage, StorageError};
use axum::body::Bytes;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Which jobs of each folder of a view have a log file and an items file (by job id), or
/// `None` where that tree is not served.
type FileSets = Vec<(Option<HashSet<String>>, Option<HashSet<String>>)>;

/// Pending and running jobs as read at one generation (optionally for one project), the
/// pending ones rendered.
struct QueueView {
    generation: u64,
    /// The finished version its read saw: the `finished` array sent with it must be of the
    /// same, or a job could be listed both running and finished.
    finished_version: u64,
    projects: Vec<String>,
    /// The `pending` array.
    pending: Bytes,
    running: Vec<JobRecord>,
}

/// The three arrays of `listjobs.json`, rendered (`finished` in parts, to be sent in order).
pub struct JobsJson {
    pub pending: Bytes,
    pub running: Bytes,
    pub finished: Vec<Bytes>,
}

/// A `finished` array as last published: what a request sends while the finished version and
/// the files of its folders are unchanged.
struct FinishedArray {
    version: u64,
    folders: Vec<(String, String)>,
    files: Arc<FileSets>,
    parts: Vec<Bytes>,
}

/// The caches, shared by every request.
#[derive(Default)]
pub struct Listing {
    counts: Mutex<Option<(u64, Vec<String>, Counts)>>,
    /// Per `project` filter (`None`: all projects).
    queues: Mutex<HashMap<Option<String>, Arc<QueueView>>>,
    /// Per `project` filter.
    finished: Arc<Mutex<HashMap<Option<String>, Arc<FinishedArray>>>>,
    /// Per `project` filter, updated by one task at a time.
    finished_views: Arc<tokio::sync::Mutex<HashMap<Option<String>, FinishedView>>>,
}

/// `/logs/…` URL of a job's log, when the file exists.
pub fn log_url(config: &Config, project: &str, spider: &str, job: &str) -> Option<String> {
    let dir = config.logs_dir.as_ref()?;
    dir.join(project)
        .join(spider)
        .join(format!("{job}.log"))
        .is_file()
        .then(|| format!("/logs/{project}/{spider}/{job}.log"))
}

/// `/items/…` URL of a job's items, when the file exists.
pub fn items_url(config: &Config, project: &str, spider: &str, job: &str) -> Option<String> {
    let dir = config.items_local()?;
    dir.join(project)
        .join(spider)
        .join(format!("{job}.jl"))
        .is_file()
        .then(|| format!("/items/{project}/{spider}/{job}.jl"))
}

/// The names, without `.{ext}`, of the regular files `*.{ext}` of a folder (none when it cannot
/// be read).
fn files_in(dir: &Path, ext: &str) -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashSet::new();
    };
    let suffix = format!(".{ext}");
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(&suffix)?.to_owned();
            let is_file = match e.file_type() {
                Ok(t) if t.is_symlink() => e.path().is_file(),
                Ok(t) => t.is_file(),
                Err(_) => false,
            };
            is_file.then_some(stem)
        })
        .collect()
}

fn render_pending(pending: &[PendingJob]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for (i, p) in pending.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        crate::pyjson::push(
            &mut out,
            &json!({
                "id": p.job, "project": p.project, "spider": p.spider, "version": p.version,
                "settings": pairs_to_map(&p.settings), "args": pairs_to_map(&p.args),
            }),
        );
    }
    out.push(b']');
    out
}

/// The keys a finished entry has after Scrapyd's own: how the job ended.
pub fn ending_keys(e: &Ended) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("outcome".into(), e.outcome.clone().into());
    map.insert("exit_code".into(), e.exit_code.into());
    map.insert("signal".into(), e.signal.into());
    map.insert("finish_reason".into(), e.finish_reason.clone().into());
    if let Some(node) = &e.node {
        map.insert("node".into(), node.clone().into());
    }
    map
}

/// The log and items files of each folder, as they are now.
fn file_sets(config: &Config, folders: &[(String, String)]) -> FileSets {
    folders
        .iter()
        .map(|(p, s)| folder_files(config, p, s))
        .collect()
}

fn folder_files(
    config: &Config,
    project: &str,
    spider: &str,
) -> (Option<HashSet<String>>, Option<HashSet<String>>) {
    (
        config
            .logs_dir
            .as_deref()
            .map(|r| files_in(&r.join(project).join(spider), "log")),
        config
            .items_local()
            .map(|r| files_in(&r.join(project).join(spider), "jl")),
    )
}

fn job_hash(job: &str) -> u64 {
    let mut h = DefaultHasher::new();
    job.hash(&mut h);
    h.finish()
}

/// What a [`FinishedView`] remembers of one entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    id: i64,
    end_time: i64,
    /// A hash of the job id: enough to find the entries whose files changed (a collision only
    /// renders one more entry again).
    job: u64,
    folder: u32,
    /// Length of the rendered entry, in bytes.
    len: u32,
}

impl Meta {
    /// The listing's order is newest first: by end time, then row id, descending.
    fn key(&self) -> (i64, i64) {
        (self.end_time, self.id)
    }
}

/// Whole entries rendered one after another, joined by `", "`.
#[derive(Debug, Clone)]
struct Segment {
    bytes: Bytes,
    entries: usize,
}

/// The `finished` array of one `project` filter, kept up to date entry by entry.
struct FinishedView {
    project: Option<String>,
    /// The finished version it shows (`None`: nothing read yet).
    version: Option<u64>,
    /// One per entry, in the listing's order.
    metas: VecDeque<Meta>,
    /// The entries, in the same order, as segments (the newest small, the oldest large).
    segments: VecDeque<Segment>,
    folders: Vec<(String, String)>,
    folder_index: HashMap<(String, String), u32>,
    /// How many entries each folder has: a folder left with none is forgotten (its files are
    /// read no more) at the end of the update.
    folder_entries: Vec<usize>,
    /// The files of each folder that the rendered links show.
    files: Arc<FileSets>,
    /// How many times it was read and rendered in full.
    full_reads: u64,
}

impl FinishedView {
    fn new(project: Option<String>) -> Self {
        FinishedView {
            project,
            version: None,
            metas: VecDeque::new(),
            segments: VecDeque::new(),
            folders: Vec::new(),
            folder_index: HashMap::new(),
            folder_entries: Vec::new(),
            files: Arc::new(Vec::new()),
            full_reads: 0,
        }
    }

    /// The array as parts to send in order.
    fn parts(&self) -> Vec<Bytes> {
        let mut parts = Vec::with_capacity(self.segments.len() * 2 + 1);
        parts.push(Bytes::from_static(b"["));
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                parts.push(Bytes::from_static(b", "));
            }
            parts.push(segment.bytes.clone());
        }
        parts.push(Bytes::from_static(b"]"));
        parts
    }

    fn published(&self) -> Option<FinishedArray> {
        Some(FinishedArray {
            version: self.version?,
            folders: self.folders.clone(),
            files: self.files.clone(),
            parts: self.parts(),
        })
    }

    /// Brings the view to the store's answer.
    fn update(&mut self, config: &Config, update: FinishedUpdate) {
        match update {
            FinishedUpdate::All(version, rows) => self.rebuild(config, version, rows),
            FinishedUpdate::Changes(version, changes, rows) => {
                if !self.apply(config, &changes, rows) {
                    // Not what it can follow: the caller reads everything at the next attempt.
                    self.version = None;
                    return;
                }
                self.version = Some(version);
                self.forget_empty_folders();
            }
        }
    }

    /// Drops the folders no entry is in any more (all their jobs pruned, or of a project the
    /// view does not show), renumbering the others.
    fn forget_empty_folders(&mut self) {
        if !self.folder_entries.contains(&0) {
            return;
        }
        let mut renumbered = Vec::with_capacity(self.folders.len());
        let (mut folders, mut files, mut entries) = (Vec::new(), Vec::new(), Vec::new());
        // The file sets are shared with the published array: only the kept ones are copied.
        for ((folder, f), n) in self
            .folders
            .drain(..)
            .zip(self.files.iter())
            .zip(std::mem::take(&mut self.folder_entries))
        {
            if n == 0 {
                renumbered.push(u32::MAX);
                continue;
            }
            renumbered.push(folders.len() as u32);
            folders.push(folder);
            files.push(f.clone());
            entries.push(n);
        }
        for meta in &mut self.metas {
            meta.folder = renumbered[meta.folder as usize];
        }
        self.folder_index = folders
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i as u32))
            .collect();
        self.folders = folders;
        self.files = Arc::new(files);
        self.folder_entries = entries;
    }

    fn rebuild(&mut self, config: &Config, version: u64, rows: Vec<FinishedJob>) {
        let full_reads = self.full_reads + 1;
        *self = FinishedView::new(self.project.take());
        self.full_reads = full_reads;
        for r in &rows {
            self.folder(config, &r.project, &r.spider);
        }
        self.push_front(&rows);
        self.version = Some(version);
    }

    /// The index of a folder, its files read when it is new to the view.
    fn folder(&mut self, config: &Config, project: &str, spider: &str) -> u32 {
        if let Some(i) = self
            .folder_index
            .get(&(project.to_owned(), spider.to_owned()))
        {
            return *i;
        }
        let i = self.folders.len() as u32;
        self.folders.push((project.to_owned(), spider.to_owned()));
        self.folder_index
            .insert((project.to_owned(), spider.to_owned()), i);
        self.folder_entries.push(0);
        Arc::make_mut(&mut self.files).push(folder_files(config, project, spider));
        i
    }

    /// Applies changes in order; `false` when they are not what the view can follow (then it
    /// must be read again).
    fn apply(
        &mut self,
        config: &Config,
        changes: &[FinishedChange],
        rows: Vec<FinishedJob>,
    ) -> bool {
        let mut rows: HashMap<i64, FinishedJob> = rows
            .into_iter()
            .filter(|r| self.project.as_ref().is_none_or(|p| *p == r.project))
            .map(|r| (r.id, r))
            .collect();
        // Row ids are reused once freed (a job pruned at once, then the next one), so what
        // counts is each id's first change (a removal: it was shown) and its last (an addition:
        // it is a finished job now, and `rows` has it).
        let mut first: HashMap<i64, FinishedChange> = HashMap::new();
        let mut last: HashMap<i64, FinishedChange> = HashMap::new();
        for change in changes {
            let (FinishedChange::Added(id) | FinishedChange::Removed(id)) = *change;
            first.entry(id).or_insert(*change);
            last.insert(id, *change);
        }
        let mut removed: HashSet<i64> = first
            .into_iter()
            .filter(|(_, c)| matches!(c, FinishedChange::Removed(_)))
            .map(|(id, _)| id)
            .collect();
        let added: Vec<i64> = last
            .into_iter()
            .filter(|(_, c)| matches!(c, FinishedChange::Added(_)))
            .map(|(id, _)| id)
            .collect();
        // A project's view has only its own jobs; all must be there for the view of all.
        if self.project.is_none() && added.iter().any(|id| !rows.contains_key(id)) {
            return false;
        }
        // Removed entries are the oldest: the back of the array.
        let mut cut = 0;
        for meta in self.metas.iter().rev() {
            if !removed.remove(&meta.id) {
                break;
            }
            cut += 1;
        }
        if self.project.is_none() && !removed.is_empty() {
            return false;
        }
        // Another project's jobs are not in a project's view; its own are at the back.
        if self.project.is_some()
            && !removed.is_empty()
            && self.metas.iter().any(|m| removed.contains(&m.id))
        {
            return false;
        }
        self.drop_back(cut);
        // Added entries are the newest: the front, newest first.
        let mut new: Vec<FinishedJob> = added.iter().filter_map(|id| rows.remove(id)).collect();
        new.sort_by_key(|r| std::cmp::Reverse((r.end_time, r.id)));
        if let (Some(oldest_new), Some(front)) = (new.last(), self.metas.front())
            && (oldest_new.end_time, oldest_new.id) <= front.key()
        {
            return false;
        }
        for r in &new {
            self.folder(config, &r.project, &r.spider);
        }
        self.push_front(&new);
        true
    }

    /// Renders `rows` (newest first, all newer than the entries) in front of the entries.
    fn push_front(&mut self, rows: &[FinishedJob]) {
        if rows.is_empty() {
            return;
        }
        let mut tails: HashMap<&Ended, Vec<u8>> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len() * 300);
        let mut metas = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            let start = out.len();
            let folder = self.folder_index[&(r.project.clone(), r.spider.clone())];
            render_entry(&mut out, r, &self.files[folder as usize], &mut tails);
            metas.push(Meta {
                id: r.id,
                end_time: r.end_time,
                job: job_hash(&r.job),
                folder,
                len: (out.len() - start) as u32,
            });
        }
        for meta in metas.into_iter().rev() {
            self.folder_entries[meta.folder as usize] += 1;
            self.metas.push_front(meta);
        }
        self.segments.push_front(Segment {
            bytes: Bytes::from(out),
            entries: rows.len(),
        });
        // Segments grow from the front to the back: a new one is merged into the next while it
        // is not much smaller, so there are a few (logarithmically many) of them.
        while self.segments.len() >= 2
            && self.segments[0].bytes.len() * 2 >= self.segments[1].bytes.len()
        {
            let (Some(a), Some(b)) = (self.segments.pop_front(), self.segments.pop_front()) else {
                break;
            };
            let mut bytes = Vec::with_capacity(a.bytes.len() + 2 + b.bytes.len());
            bytes.extend_from_slice(&a.bytes);
            bytes.extend_from_slice(b", ");
            bytes.extend_from_slice(&b.bytes);
            self.segments.push_front(Segment {
                bytes: Bytes::from(bytes),
                entries: a.entries + b.entries,
            });
        }
    }

    /// Counts `removed` entries out of their folders; returns their length in the segments
    /// (each with its `", "`).
    fn take_entries(folder_entries: &mut [usize], removed: impl Iterator<Item = Meta>) -> usize {
        removed
            .map(|m| {
                folder_entries[m.folder as usize] -= 1;
                m.len as usize + 2
            })
            .sum()
    }

    /// Removes the first `n` entries.
    fn drop_front(&mut self, mut n: usize) {
        while n > 0 {
            let Some(segment) = self.segments.front_mut() else {
                return;
            };
            let k = n.min(segment.entries);
            let bytes = Self::take_entries(&mut self.folder_entries, self.metas.drain(..k));
            if k == segment.entries {
                self.segments.pop_front();
            } else {
                segment.bytes = segment.bytes.slice(bytes..);
                segment.entries -= k;
            }
            n -= k;
        }
    }

    /// Removes the last `n` entries.
    fn drop_back(&mut self, mut n: usize) {
        while n > 0 {
            let Some(segment) = self.segments.back_mut() else {
                return;
            };
            let k = n.min(segment.entries);
            let from = self.metas.len() - k;
            let bytes = Self::take_entries(&mut self.folder_entries, self.metas.drain(from..));
            if k == segment.entries {
                self.segments.pop_back();
            } else {
                segment.bytes = segment.bytes.slice(..segment.bytes.len() - bytes);
                segment.entries -= k;
            }
            n -= k;
        }
    }

    /// Reads the folders again. When they changed: how many of the first entries must be
    /// rendered again because their log or items file came or went (0: none), and the files
    /// as they are now (which [`FinishedView::replace_prefix`] renders with).
    fn stale_prefix(&self, config: &Config) -> Option<(usize, FileSets)> {
        let now = file_sets(config, &self.folders);
        if now == *self.files {
            return None;
        }
        let mut changed: HashMap<u32, HashSet<u64>> = HashMap::new();
        for (i, (old, new)) in self.files.iter().zip(&now).enumerate() {
            for (a, b) in [(&old.0, &new.0), (&old.1, &new.1)] {
                if let (Some(a), Some(b)) = (a, b) {
                    changed
                        .entry(i as u32)
                        .or_default()
                        .extend(a.symmetric_difference(b).map(|j| job_hash(j)));
                }
            }
        }
        let stale = self
            .metas
            .iter()
            .rposition(|m| {
                changed
                    .get(&m.folder)
                    .is_some_and(|jobs| jobs.contains(&m.job))
            })
            .map_or(0, |i| i + 1);
        Some((stale, now))
    }

    /// Renders the first entries again from `rows` with the links of `files`; `rows` must be
    /// the same jobs in the same order, else it returns `false` and the view must be read
    /// again.
    fn replace_prefix(&mut self, rows: &[FinishedJob], files: FileSets) -> bool {
        self.files = Arc::new(files);
        if rows.len() > self.metas.len() || rows.iter().zip(&self.metas).any(|(r, m)| r.id != m.id)
        {
            return false;
        }
        self.drop_front(rows.len());
        self.push_front(rows);
        true
    }
}

/// Appends one entry of the `finished` array. `tails` keeps the rendered endings seen so far
/// (most jobs end alike).
fn render_entry<'a>(
    out: &mut Vec<u8>,
    r: &'a FinishedJob,
    files: &(Option<HashSet<String>>, Option<HashSet<String>>),
    tails: &mut HashMap<&'a Ended, Vec<u8>>,
) {
    out.extend_from_slice(b"{\"id\": ");
    crate::pyjson::push(out, &r.job);
    out.extend_from_slice(b", \"project\": ");
    crate::pyjson::push(out, &r.project);
    out.extend_from_slice(b", \"spider\": ");
    crate::pyjson::push(out, &r.spider);
    out.extend_from_slice(b", \"start_time\": ");
    crate::pyjson::push(out, &format_time(r.start_time));
    out.extend_from_slice(b", \"end_time\": ");
    crate::pyjson::push(out, &format_time(r.end_time));
    for (key, names, tree, ext) in [
        ("log_url", &files.0, "logs", "log"),
        ("items_url", &files.1, "items", "jl"),
    ] {
        out.extend_from_slice(b", \"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\": ");
        match names {
            Some(jobs) if jobs.contains(&r.job) => crate::pyjson::push(
                out,
                &format!("/{tree}/{}/{}/{}.{ext}", r.project, r.spider, r.job),
            ),
            _ => out.extend_from_slice(b"null"),
        }
    }
    let tail = tails.entry(&r.ending).or_insert_with(|| {
        let mut tail = Vec::with_capacity(96);
        for (key, value) in ending_keys(&r.ending) {
            tail.extend_from_slice(b", ");
            crate::pyjson::push(&mut tail, &key);
            tail.extend_from_slice(b": ");
            crate::pyjson::push(&mut tail, &value);
        }
        tail.push(b'}');
        tail
    });
    out.extend_from_slice(tail);
}

impl QueueView {
    /// The `running` array, with the file links as they are now.
    fn running_json(&self, config: &Config) -> Bytes {
        let entries: Vec<Value> = self
            .running
            .iter()
            .map(|r| {
                let mut entry = json!({
                    "id": r.job, "project": r.project, "spider": r.spider, "pid": r.pid,
                    "start_time": format_time(r.start_time),
                    "log_url": log_url(config, &r.project, &r.spider, &r.job),
                    "items_url": items_url(config, &r.project, &r.spider, &r.job),
                });
                if let Some(node) = &r.node {
                    entry["node"] = node.clone().into();
                }
                entry
            })
            .collect();
        Bytes::from(crate::pyjson::to_vec(&entries))
    }
}

impl Listing {
    /// `daemonstatus.json`'s counts over `projects`.
    pub async fn counts(
        &self,
        store: &Storage,
        projects: Vec<String>,
    ) -> Result<Counts, StorageError> {
        // Another node's writes count too: the versions are brought to the database's first.
        store.refresh_versions().await?;
        let generation = store.generation();
        if let Some((g, p, counts)) = &*self.counts.lock().unwrap_or_else(|e| e.into_inner())
            && *g == generation
            && *p == projects
        {
            return Ok(*counts);
        }
        let (seen, counts) = store.counts(projects.clone()).await?;
        let mut cache = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|(g, _, _)| *g <= seen) {
            *cache = Some((seen, projects, counts));
        }
        Ok(counts)
    }

    /// `listjobs.json`'s arrays for `projects` (all, or only `project`'s), as of one moment:
    /// pending and running are read in one step, and the `finished` array sent with them is of
    /// the finished version that read saw.
    pub async fn jobs_json(
        &self,
        store: &Storage,
        config: &Arc<Config>,
        projects: Vec<String>,
        project: Option<String>,
    ) -> Result<JobsJson, StorageError> {
        // Another node's writes count too: the versions are brought to the database's first.
        store.refresh_versions().await?;
        let mut queue = self.queue_view(store, &projects, &project, false).await?;
        let mut attempts = 0;
        loop {
            let (version, finished) = self
                .finished_json(store, config, &projects, &project)
                .await?;
            attempts += 1;
            // A job finished between the two reads (or one of them saw its finish and the other
            // did not): read pending and running again, and follow the finished array to where
            // the store is now. Only finishes every few milliseconds could outrun four attempts.
            if version == queue.finished_version || attempts == 4 {
                return Ok(JobsJson {
                    pending: queue.pending.clone(),
                    running: queue.running_json(config),
                    finished,
                });
            }
            queue = self.queue_view(store, &projects, &project, true).await?;
        }
    }

    /// Reads and renders the `finished` array of all projects ahead of the first
    /// `listjobs.json`, which would otherwise wait for it (about half a second at 100 000
    /// finished jobs); the daemon does this at start-up. Returns how many finished jobs it
    /// shows.
    pub async fn prepare(
        &self,
        store: &Storage,
        config: &Arc<Config>,
        projects: Vec<String>,
    ) -> Result<usize, StorageError> {
        self.finished_json(store, config, &projects, &None).await?;
        let views = self.finished_views.lock().await;
        Ok(views.get(&None).map_or(0, |v| v.metas.len()))
    }

    /// Pending and running, from the cache unless `fresh` (or the store changed since).
    async fn queue_view(
        &self,
        store: &Storage,
        projects: &[String],
        project: &Option<String>,
        fresh: bool,
    ) -> Result<Arc<QueueView>, StorageError> {
        let generation = store.generation();
        let cached = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(project)
            .filter(|v| !fresh && v.generation == generation && v.projects == projects)
            .cloned();
        if let Some(view) = cached {
            return Ok(view);
        }
        let scope = match project {
            Some(p) => vec![p.clone()],
            None => projects.to_vec(),
        };
        let (seen, snapshot) = store.queue_snapshot(scope, project.clone()).await?;
        let QueueSnapshot {
            pending,
            running,
            finished_version,
        } = snapshot;
        let view = Arc::new(QueueView {
            generation: seen,
            finished_version,
            projects: projects.to_vec(),
            pending: Bytes::from(render_pending(&pending)),
            running,
        });
        let mut views = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        // Views of older generations are of no more use.
        views.retain(|_, v| v.generation >= seen);
        if views.get(project).is_none_or(|v| v.generation <= seen) {
            views.insert(project.clone(), view.clone());
        }
        Ok(view)
    }

    /// The `finished` array and its finished version: as published while nothing it shows
    /// changed, else brought up to date by its [`FinishedView`]. The update runs in a task of
    /// its own, so that a client going away does not throw the view's work away. The views of
    /// projects no longer in `projects` (deleted) go then.
    async fn finished_json(
        &self,
        store: &Storage,
        config: &Arc<Config>,
        projects: &[String],
        project: &Option<String>,
    ) -> Result<(u64, Vec<Bytes>), StorageError> {
        let published = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(project)
            .cloned();
        if let Some(array) = published
            && array.version == store.finished_version()
            && file_sets(config, &array.folders) == *array.files
        {
            return Ok((array.version, array.parts.clone()));
        }
        let views = self.finished_views.clone();
        let published = self.finished.clone();
        let (store, config, project) = (store.clone(), config.clone(), project.clone());
        let projects = projects.to_vec();
        tokio::spawn(async move {
            let mut views = views.lock().await;
            let known = |p: &Option<String>| p.as_ref().is_none_or(|p| projects.contains(p));
            views.retain(|p, _| known(p));
            published
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p, _| known(p));
            let view = views
                .entry(project.clone())
                .or_insert_with(|| FinishedView::new(project.clone()));
            bring_up_to_date(view, &store, &config).await?;
            let array = Arc::new(view.published().ok_or(StorageError::closed())?);
            let answer = (array.version, array.parts.clone());
            published
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(project, array);
            Ok(answer)
        })
        .await
        .map_err(|_| StorageError::closed())?
    }
}

/// What the store has for a view at `since` (its version, if any): the changes since, or
/// everything.
async fn read_update(
    store: &Storage,
    since: Option<u64>,
    project: Option<String>,
) -> Result<FinishedUpdate, StorageError> {
    let update = store.finished_update(since, project).await?;
    Ok(update)
}

/// Applies an update off the async threads (a full one renders the whole history).
async fn apply_update(
    view: &mut FinishedView,
    config: &Arc<Config>,
    update: FinishedUpdate,
) -> Result<(), StorageError> {
    let config = config.clone();
    // Left in its place if the update fails: an empty view of the same filter.
    let placeholder = FinishedView::new(view.project.clone());
    let mut taken = std::mem::replace(view, placeholder);
    *view = tokio::task::spawn_blocking(move || {
        taken.update(&config, update);
        taken
    })
    .await
    .map_err(|_| StorageError::closed())?;
    Ok(())
}

/// Brings a view to the store's current finished version and the files as they are now.
async fn bring_up_to_date(
    view: &mut FinishedView,
    store: &Storage,
    config: &Arc<Config>,
) -> Result<(), StorageError> {
    for attempt in 0..4 {
        if view.version != Some(store.finished_version()) {
            let update = read_update(store, view.version, view.project.clone()).await?;
            apply_update(view, config, update).await?;
            if view.version.is_none() {
                // Changes it cannot follow: everything, read in full.
                let update = read_update(store, None, view.project.clone()).await?;
                apply_update(view, config, update).await?;
            }
        }
        if attempt == 3 {
            // Jobs keep finishing while files change: the links stay as rendered (the files
            // recorded are those), and the next request finds the folders changed again.
            return Ok(());
        }
        let Some((stale, files)) = view.stale_prefix(config) else {
            return Ok(());
        };
        let project = view.project.clone();
        let (version, rows) = store.finished_newest(project, stale).await?;
        if Some(version) != view.version {
            // A job finished meanwhile: follow it first.
            continue;
        }
        if view.replace_prefix(&rows, files) {
            return Ok(());
        }
        view.version = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DbsDir, ItemsDir};
    use crate::storage::model::PendingJob;
    use crate::storage::model::{Ending, Outcome, Retention};
    use proptest::prelude::*;

    /// What the test does to the daemon between two listings.
    #[derive(Debug, Clone)]
    enum Step {
        /// A job of project `p0`/`p1` and spider `s0`/`s1` finishes at `end` (seconds).
        Finish { project: u8, spider: u8, end: i64 },
        /// A log (`true`) or items file of the `n`-th job created so far appears.
        AddFile { job: usize, log: bool },
        /// The log or items file of the `n`-th job goes.
        RemoveFile { job: usize, log: bool },
        /// `listjobs` for all projects (`None`) or one.
        List(Option<u8>),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..2u8, 0..2u8, 0..40i64).prop_map(|(project, spider, end)| Step::Finish { project, spider, end }),
            2 => (0..64usize, any::<bool>()).prop_map(|(job, log)| Step::AddFile { job, log }),
            1 => (0..64usize, any::<bool>()).prop_map(|(job, log)| Step::RemoveFile { job, log }),
            3 => prop_oneof![Just(None), (0..2u8).prop_map(Some)].prop_map(Step::List),
        ]
    }

    fn config(dir: &Path) -> Arc<Config> {
        let mut config = Config::defaults(dir);
        config.logs_dir = Some(dir.join("logs"));
        config.items_dir = ItemsDir::Local(dir.join("items"));
        Arc::new(config)
    }

    fn finished_text(json: &JobsJson) -> String {
        String::from_utf8(json.finished.concat()).unwrap()
    }

    /// Runs a job of `project` and `spider` and records its finish at `end` (seconds), keeping
    /// `keep` finished jobs.
    async fn run_and_finish(
        store: &Storage,
        project: &str,
        spider: &str,
        job: &str,
        end: i64,
        keep: usize,
    ) {
        let job = PendingJob::new(project, spider, job);
        let scope = vec![job.project.clone()];
        store.enqueue(job.into()).await.unwrap();
        let claim = store.claim_next(scope, 1).await.unwrap().unwrap();
        let ending = Ending {
            end_time: 1_700_000_000_000_000 + end * 1_000_000,
            exit_code: Some(end as i32 % 2),
            signal: None,
            outcome: Outcome::Finished,
            reason: None,
            finish_reason: Some("finished".into()),
            stats: None,
        };
        let retention = Retention {
            finished_to_keep: keep,
            jobdata_to_keep: 0,
        };
        store
            .finish(claim.record.id, ending, retention)
            .await
            .unwrap();
    }

    /// A listing kept up to date across the steps shows, every time, what a new listing reading
    /// everything shows.
    /// Returns how many times the view of all projects was read in full.
    fn check(steps: Vec<Step>, keep: usize) -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path());
            let store = Storage::open(DbsDir::Memory).unwrap();
            let listing = Listing::default();
            let projects = vec!["p0".to_string(), "p1".to_string()];
            let mut jobs: Vec<(String, String, String)> = Vec::new();
            for step in steps {
                match step {
                    Step::Finish {
                        project,
                        spider,
                        end,
                    } => {
                        let (p, s, j) = (
                            format!("p{project}"),
                            format!("s{spider}"),
                            format!("job{}", jobs.len()),
                        );
                        run_and_finish(&store, &p, &s, &j, end, keep).await;
                        jobs.push((p, s, j));
                    }
                    Step::AddFile { job, log } | Step::RemoveFile { job, log } => {
                        let Some((p, s, j)) = jobs.get(job % jobs.len().max(1)) else {
                            continue;
                        };
                        let (tree, ext) = if log {
                            ("logs", "log")
                        } else {
                            ("items", "jl")
                        };
                        let folder = dir.path().join(tree).join(p).join(s);
                        let file = folder.join(format!("{j}.{ext}"));
                        if matches!(step, Step::AddFile { .. }) {
                            std::fs::create_dir_all(&folder).unwrap();
                            std::fs::write(&file, b"x").unwrap();
                        } else {
                            let _ = std::fs::remove_file(&file);
                        }
                    }
                    Step::List(project) => {
                        let project = project.map(|p| format!("p{p}"));
                        let kept = listing
                            .jobs_json(&store, &config, projects.clone(), project.clone())
                            .await
                            .unwrap();
                        let fresh = Listing::default()
                            .jobs_json(&store, &config, projects.clone(), project.clone())
                            .await
                            .unwrap();
                        let kept = finished_text(&kept);
                        assert_eq!(kept, finished_text(&fresh));
                        let parsed: Vec<Value> = serde_json::from_str(&kept).unwrap();
                        assert!(parsed.len() <= keep);
                        // The folders whose files it reads are those of the jobs it shows.
                        let mut shown: HashMap<(String, String), usize> = HashMap::new();
                        for e in &parsed {
                            let folder = (e["project"].as_str(), e["spider"].as_str());
                            let folder = (folder.0.unwrap().into(), folder.1.unwrap().into());
                            *shown.entry(folder).or_default() += 1;
                        }
                        let views = listing.finished_views.lock().await;
                        let view = &views[&project];
                        let read: HashMap<(String, String), usize> = view
                            .folders
                            .iter()
                            .cloned()
                            .zip(view.folder_entries.iter().copied())
                            .collect();
                        assert_eq!(read, shown);
                    }
                }
            }
            let views = listing.finished_views.lock().await;
            views.get(&None).map_or(0, |v| v.full_reads)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_finished_array_kept_up_to_date_equals_one_read_in_full(
            steps in proptest::collection::vec(step(), 1..80),
            keep in 1..30usize,
        ) {
            check(steps, keep);
        }
    }

    /// With `finished_to_keep = 1`, a job that finishes older than the one shown is removed at
    /// once, and its row id goes to the next job.
    #[test]
    fn follows_a_row_id_freed_and_reused_between_two_listings() {
        let f = |end| Step::Finish {
            project: 0,
            spider: 0,
            end,
        };
        check(
            vec![
                f(18),
                f(18),
                f(18),
                f(18),
                f(18),
                f(18),
                Step::List(Some(0)),
                f(0),
                f(18),
                Step::List(Some(0)),
            ],
            1,
        );
    }

    #[test]
    fn follows_many_finishes_and_files_across_listings() {
        let mut steps = Vec::new();
        for i in 0..300 {
            steps.push(Step::Finish {
                project: (i % 2) as u8,
                spider: (i % 3 == 0) as u8,
                end: i,
            });
            if i % 4 == 0 {
                steps.push(Step::AddFile {
                    job: i as usize,
                    log: true,
                });
            }
            if i % 7 == 0 {
                steps.push(Step::RemoveFile {
                    job: i as usize / 2,
                    log: true,
                });
            }
            steps.push(Step::List(None));
            if i % 5 == 0 {
                steps.push(Step::List(Some(1)));
            }
        }
        // 300 listings, the last 200 with jobs removed at the back: one full read, the first.
        assert_eq!(check(steps, 100), 1);
    }

    /// After `prepare`, the first listing of all projects is sent as published: no read of
    /// its own.
    #[tokio::test]
    async fn prepare_renders_the_array_of_all_projects_before_any_listing() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = Storage::open(DbsDir::Memory).unwrap();
        let listing = Listing::default();
        for i in 0..5 {
            run_and_finish(&store, "p0", "s0", &format!("j{i}"), i, 100).await;
        }
        let projects = vec!["p0".to_string()];
        listing
            .prepare(&store, &config, projects.clone())
            .await
            .unwrap();
        let published = listing.finished.lock().unwrap().get(&None).cloned();
        let published = published.expect("the array of all projects is published");
        assert_eq!(published.version, store.finished_version());
        let json = listing
            .jobs_json(&store, &config, projects, None)
            .await
            .unwrap();
        assert_eq!(json.finished, published.parts);
        assert_eq!(finished_text(&json).matches("\"id\"").count(), 5);
        let views = listing.finished_views.lock().await;
        assert_eq!(views[&None].full_reads, 1);
    }

    /// The view of a project that is gone is dropped at the next update, not kept forever.
    #[tokio::test]
    async fn the_view_of_a_deleted_project_goes_at_the_next_update() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = Storage::open(DbsDir::Memory).unwrap();
        let listing = Listing::default();
        run_and_finish(&store, "p0", "s0", "a", 1, 100).await;
        run_and_finish(&store, "p1", "s0", "b", 2, 100).await;
        let both = vec!["p0".to_string(), "p1".to_string()];
        for project in [None, Some("p0".to_string()), Some("p1".to_string())] {
            listing
                .jobs_json(&store, &config, both.clone(), project)
                .await
                .unwrap();
        }
        let filters = |listing: &Listing| {
            let mut published: Vec<Option<String>> =
                listing.finished.lock().unwrap().keys().cloned().collect();
            published.sort();
            published
        };
        assert_eq!(
            filters(&listing),
            [None, Some("p0".into()), Some("p1".into())]
        );
        // p1 is deleted (its finished jobs stay in the history), then a job finishes.
        run_and_finish(&store, "p0", "s0", "c", 3, 100).await;
        let json = listing
            .jobs_json(&store, &config, vec!["p0".to_string()], None)
            .await
            .unwrap();
        assert_eq!(finished_text(&json).matches("\"id\"").count(), 3);
        assert_eq!(filters(&listing), [None, Some("p0".into())]);
        let views = listing.finished_views.lock().await;
        assert!(views.contains_key(&Some("p0".into())) && !views.contains_key(&Some("p1".into())));
    }

    /// A finish seen by the finished array but not by a cached pending and running view (the
    /// store bumps the finished version inside the finish, its write generation after it) must
    /// not list the job twice.
    #[tokio::test]
    async fn a_job_is_never_listed_both_running_and_finished() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = Storage::open(DbsDir::Memory).unwrap();
        let listing = Listing::default();
        let projects = vec!["p0".to_string()];
        store
            .enqueue(PendingJob::new("p0", "s0", "j").into())
            .await
            .unwrap();
        let id = store
            .claim_next(projects.clone(), 1)
            .await
            .unwrap()
            .unwrap()
            .record
            .id;
        let ids = |text: &[u8]| -> Vec<String> {
            serde_json::from_slice::<Vec<Value>>(text)
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let before = listing
            .jobs_json(&store, &config, projects.clone(), None)
            .await
            .unwrap();
        assert_eq!(ids(&before.running), ["j"]);
        // The finish, without the write generation moving yet.
        let ending = Ending {
            end_time: 2,
            exit_code: Some(0),
            signal: None,
            outcome: Outcome::Finished,
            reason: None,
            finish_reason: None,
            stats: None,
        };
        store.finish_unannounced(id, ending, 10).await;
        let after = listing
            .jobs_json(&store, &config, projects, None)
            .await
            .unwrap();
        assert!(ids(&after.running).is_empty());
        assert_eq!(ids(&after.finished.concat()), ["j"]);
    }

    #[test]
    fn segments_cut_at_both_ends_render_like_new() {
        let rows: Vec<FinishedJob> = (0..40)
            .rev()
            .map(|i| FinishedJob {
                id: i,
                project: "p".into(),
                spider: "s".into(),
                job: format!("j{i}"),
                start_time: i * 1_000_000,
                end_time: i * 1_000_000,
                ending: Ended {
                    outcome: Some("finished".into()),
                    exit_code: Some(0),
                    signal: None,
                    finish_reason: None,
                    node: None,
                },
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let text = |v: &FinishedView| String::from_utf8(v.parts().concat()).unwrap();
        let mut view = FinishedView::new(None);
        // Built from the oldest up, ten at a time: several segments.
        view.rebuild(&config, 0, rows[30..].to_vec());
        for chunk in [20..30, 10..20, 0..10] {
            let apply: Vec<FinishedChange> = rows[chunk.clone()]
                .iter()
                .rev()
                .map(|r| FinishedChange::Added(r.id))
                .collect();
            assert!(view.apply(&config, &apply, rows[chunk].to_vec()));
        }
        assert!(view.segments.len() > 1);
        let mut fresh = FinishedView::new(None);
        fresh.rebuild(&config, 0, rows.clone());
        assert_eq!(text(&view), text(&fresh));
        view.drop_front(15);
        view.drop_back(12);
        fresh.rebuild(&config, 0, rows[15..28].to_vec());
        assert_eq!(text(&view), text(&fresh));
        let parsed: Vec<Value> = serde_json::from_str(&text(&view)).unwrap();
        assert_eq!(parsed.len(), 13);
        // An older job than the newest shown is not something to follow.
        assert!(!view.apply(&config, &[FinishedChange::Added(20)], rows[19..21].to_vec()));
    }
}
