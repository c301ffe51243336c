//! The jobs listing — `listjobs.json` and `daemonstatus.json`'s counts — as a read model over
//! the store.
//!
//! What is read from SQLite and rendered to JSON is cached under the store's write generation
//! and the set of known projects ([`crate::store::Store::generation`]): while neither changed,
//! a request reuses it, and any write makes the next request read again. Only what cannot be
//! cached is done per request: whether each job's log and items files exist (they come and go
//! outside the store: crawls create them, `jobs_to_keep` and users delete them). That check reads
//! each spider's folder once per request instead of testing every file, so a history of 100 000
//! finished jobs costs a few folder reads.

use crate::config::Config;
use crate::jobs::{Ended, FinishedJob, JobRecord, format_time};
use crate::queue::{PendingJob, pairs_to_map};
use crate::store::{Store, StoreError};
use axum::body::Bytes;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// `daemonstatus.json`'s counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub pending: usize,
    pub running: usize,
    pub finished: usize,
}

/// A finished job, rendered but for its two file links.
struct FinishedEntry {
    /// Index into [`JobsView::folders`].
    folder: usize,
    job: String,
    /// `{"id": …, …, "end_time": …` (no closing brace).
    head: Box<[u8]>,
    /// `, "outcome": …}` (shared between entries that end alike).
    tail: Arc<[u8]>,
}

/// Which jobs of each folder of a view have a log file and an items file (by job id), or
/// `None` where that tree is not served.
type FileSets = Vec<(Option<HashSet<String>>, Option<HashSet<String>>)>;

/// Pending, running and finished jobs as read at one generation (optionally for one project).
pub struct JobsView {
    generation: u64,
    projects: Vec<String>,
    /// The `pending` array, rendered.
    pending: Bytes,
    running: Vec<JobRecord>,
    /// `(project, spider)` of the finished jobs.
    folders: Vec<(String, String)>,
    finished: Vec<FinishedEntry>,
    /// The `finished` array as last rendered, with the files it was rendered for.
    rendered: Mutex<Option<(FileSets, Bytes)>>,
}

/// The caches, shared by every request.
#[derive(Default)]
pub struct Listing {
    counts: Mutex<Option<(u64, Vec<String>, Counts)>>,
    views: Mutex<HashMap<Option<String>, Arc<JobsView>>>,
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
    map
}

impl JobsView {
    fn new(generation: u64, projects: Vec<String>, snapshot: Snapshot) -> JobsView {
        let mut folders: Vec<(String, String)> = Vec::new();
        let mut folder_index: HashMap<(String, String), usize> = HashMap::new();
        let mut tails: HashMap<Ended, Arc<[u8]>> = HashMap::new();
        let finished = snapshot
            .finished
            .into_iter()
            .map(|r| {
                let mut head = Vec::with_capacity(160);
                head.extend_from_slice(b"{\"id\": ");
                crate::pyjson::push(&mut head, &r.job);
                head.extend_from_slice(b", \"project\": ");
                crate::pyjson::push(&mut head, &r.project);
                head.extend_from_slice(b", \"spider\": ");
                crate::pyjson::push(&mut head, &r.spider);
                head.extend_from_slice(b", \"start_time\": ");
                crate::pyjson::push(&mut head, &format_time(r.start_time));
                head.extend_from_slice(b", \"end_time\": ");
                crate::pyjson::push(&mut head, &format_time(r.end_time));
                let tail = tails
                    .entry(r.ending)
                    .or_insert_with_key(|ending| {
                        let mut tail = Vec::with_capacity(96);
                        for (key, value) in ending_keys(ending) {
                            tail.extend_from_slice(b", ");
                            crate::pyjson::push(&mut tail, &key);
                            tail.extend_from_slice(b": ");
                            crate::pyjson::push(&mut tail, &value);
                        }
                        tail.push(b'}');
                        Arc::from(tail)
                    })
                    .clone();
                let key = (r.project, r.spider);
                let folder = match folder_index.get(&key) {
                    Some(&i) => i,
                    None => {
                        folders.push(key.clone());
                        folder_index.insert(key, folders.len() - 1);
                        folders.len() - 1
                    }
                };
                FinishedEntry {
                    folder,
                    job: r.job,
                    head: head.into_boxed_slice(),
                    tail,
                }
            })
            .collect();
        JobsView {
            generation,
            projects,
            pending: Bytes::from(render_pending(&snapshot.pending)),
            running: snapshot.running,
            folders,
            finished,
            rendered: Mutex::new(None),
        }
    }

    /// The `pending` array.
    pub fn pending_json(&self) -> Bytes {
        self.pending.clone()
    }

    /// The `running` array, with the file links as they are now.
    pub fn running_json(&self, config: &Config) -> Bytes {
        let entries: Vec<Value> = self
            .running
            .iter()
            .map(|r| {
                json!({
                    "id": r.job, "project": r.project, "spider": r.spider, "pid": r.pid,
                    "start_time": format_time(r.start_time),
                    "log_url": log_url(config, &r.project, &r.spider, &r.job),
                    "items_url": items_url(config, &r.project, &r.spider, &r.job),
                })
            })
            .collect();
        Bytes::from(crate::pyjson::to_vec(&entries))
    }

    /// The `finished` array, with the file links as they are now: one folder read per spider,
    /// and the array is rendered again only when those files changed.
    pub fn finished_json(&self, config: &Config) -> Bytes {
        let sets: FileSets = self
            .folders
            .iter()
            .map(|(p, s)| {
                let logs = config.logs_dir.as_deref();
                (
                    logs.map(|r| files_in(&r.join(p).join(s), "log")),
                    config
                        .items_local()
                        .map(|r| files_in(&r.join(p).join(s), "jl")),
                )
            })
            .collect();
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, bytes)) = &*rendered
            && *seen == sets
        {
            return bytes.clone();
        }
        let bytes = Bytes::from(self.render_finished(&sets));
        *rendered = Some((sets, bytes.clone()));
        bytes
    }

    fn render_finished(&self, sets: &FileSets) -> Vec<u8> {
        let size: usize = self
            .finished
            .iter()
            .map(|e| e.head.len() + e.tail.len() + 40)
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        for (i, e) in self.finished.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(&e.head);
            let (project, spider) = &self.folders[e.folder];
            let (logs, items) = &sets[e.folder];
            for (key, files, tree, ext) in [
                ("log_url", logs, "logs", "log"),
                ("items_url", items, "items", "jl"),
            ] {
                out.extend_from_slice(b", \"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\": ");
                match files {
                    Some(jobs) if jobs.contains(&e.job) => crate::pyjson::push(
                        &mut out,
                        &format!("/{tree}/{project}/{spider}/{}.{ext}", e.job),
                    ),
                    _ => out.extend_from_slice(b"null"),
                }
            }
            out.extend_from_slice(&e.tail);
        }
        out.push(b']');
        out
    }
}

/// What one store read returns for a view.
struct Snapshot {
    pending: Vec<PendingJob>,
    running: Vec<JobRecord>,
    finished: Vec<FinishedJob>,
}
impl Listing {
    /// `daemonstatus.json`'s counts over `projects`.
    pub async fn counts(&self, store: &Store, projects: Vec<String>) -> Result<Counts, StoreError> {
        let generation = store.generation();
        if let Some((g, p, counts)) = &*self.counts.lock().unwrap_or_else(|e| e.into_inner())
            && *g == generation
            && *p == projects
        {
            return Ok(*counts);
        }
        let scope = projects.clone();
        let (seen, counts) = store
            .read(move |db| {
                Ok(Counts {
                    pending: db.pending_count(&scope)?,
                    running: db.running_count()?,
                    finished: db.finished_count()?,
                })
            })
            .await?;
        let mut cache = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|(g, _, _)| *g <= seen) {
            *cache = Some((seen, projects, counts));
        }
        Ok(counts)
    }

    /// The jobs of `projects` (all, or only `project`'s).
    pub async fn view(
        &self,
        store: &Store,
        projects: Vec<String>,
        project: Option<String>,
    ) -> Result<Arc<JobsView>, StoreError> {
        let generation = store.generation();
        if let Some(view) = self
            .views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&project)
            && view.generation == generation
            && view.projects == projects
        {
            return Ok(view.clone());
        }
        let scope = match &project {
            Some(p) => vec![p.clone()],
            None => projects.clone(),
        };
        let filter = project.clone();
        let (seen, snapshot) = store
            .read(move |db| {
                let pending = db.pending(&scope)?;
                let mut running = db.running()?;
                if let Some(p) = &filter {
                    running.retain(|r| r.project == *p);
                }
                let finished = db.finished_brief(filter.as_deref())?;
                Ok(Snapshot {
                    pending,
                    running,
                    finished,
                })
            })
            .await?;
        let view = tokio::task::spawn_blocking(move || JobsView::new(seen, projects, snapshot))
            .await
            .map(Arc::new)
            .map_err(|_| StoreError::Closed)?;
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        // Views of older generations are of no more use.
        views.retain(|_, v| v.generation >= seen);
        if views.get(&project).is_none_or(|v| v.generation <= seen) {
            views.insert(project, view.clone());
        }
        Ok(view)
    }
}
