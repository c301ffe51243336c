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

/// Which jobs of each folder of a view have a log file and an items file (by job id), or
/// `None` where that tree is not served.
type FileSets = Vec<(Option<HashSet<String>>, Option<HashSet<String>>)>;

/// Pending, running and finished jobs as read at one generation (optionally for one project),
/// rendered. Only the rendered JSON is kept, not the records it was made from.
struct JobsView {
    generation: u64,
    projects: Vec<String>,
    /// The `pending` array.
    pending: Bytes,
    running: Vec<JobRecord>,
    /// `(project, spider)` of the finished jobs, and which of their files existed when the
    /// `finished` array was rendered.
    folders: Vec<(String, String)>,
    files: FileSets,
    /// The `finished` array.
    finished: Bytes,
}

/// The three arrays of `listjobs.json`, rendered.
pub struct JobsJson {
    pub pending: Bytes,
    pub running: Bytes,
    pub finished: Bytes,
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

/// The log and items files of each folder, as they are now.
fn file_sets(config: &Config, folders: &[(String, String)]) -> FileSets {
    folders
        .iter()
        .map(|(p, s)| {
            (
                config
                    .logs_dir
                    .as_deref()
                    .map(|r| files_in(&r.join(p).join(s), "log")),
                config
                    .items_local()
                    .map(|r| files_in(&r.join(p).join(s), "jl")),
            )
        })
        .collect()
}

/// The `finished` array, and the folders and files it was rendered with.
fn render_finished(
    config: &Config,
    finished: Vec<FinishedJob>,
) -> (Vec<(String, String)>, FileSets, Vec<u8>) {
    let mut folders: Vec<(String, String)> = Vec::new();
    let mut folder_of: Vec<usize> = Vec::with_capacity(finished.len());
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for r in &finished {
        let i = *index
            .entry((r.project.as_str(), r.spider.as_str()))
            .or_insert_with(|| {
                folders.push((r.project.clone(), r.spider.clone()));
                folders.len() - 1
            });
        folder_of.push(i);
    }
    drop(index);
    let files = file_sets(config, &folders);
    let mut tails: HashMap<&Ended, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(finished.len() * 300 + 2);
    out.push(b'[');
    for (i, r) in finished.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(b"{\"id\": ");
        crate::pyjson::push(&mut out, &r.job);
        out.extend_from_slice(b", \"project\": ");
        crate::pyjson::push(&mut out, &r.project);
        out.extend_from_slice(b", \"spider\": ");
        crate::pyjson::push(&mut out, &r.spider);
        out.extend_from_slice(b", \"start_time\": ");
        crate::pyjson::push(&mut out, &format_time(r.start_time));
        out.extend_from_slice(b", \"end_time\": ");
        crate::pyjson::push(&mut out, &format_time(r.end_time));
        let (logs, items) = &files[folder_of[i]];
        for (key, names, tree, ext) in [
            ("log_url", logs, "logs", "log"),
            ("items_url", items, "items", "jl"),
        ] {
            out.extend_from_slice(b", \"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\": ");
            match names {
                Some(jobs) if jobs.contains(&r.job) => crate::pyjson::push(
                    &mut out,
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
    out.push(b']');
    drop(tails);
    (folders, files, out)
}

impl JobsView {
    fn new(
        config: &Config,
        generation: u64,
        projects: Vec<String>,
        snapshot: Snapshot,
    ) -> JobsView {
        let pending = Bytes::from(render_pending(&snapshot.pending));
        let (folders, files, finished) = render_finished(config, snapshot.finished);
        JobsView {
            generation,
            projects,
            pending,
            running: snapshot.running,
            folders,
            files,
            finished: Bytes::from(finished),
        }
    }

    /// The `running` array, with the file links as they are now.
    fn running_json(&self, config: &Config) -> Bytes {
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

    /// The arrays, if the finished jobs' files are still those it was rendered with (one folder
    /// read per spider).
    fn json(&self, config: &Config) -> Option<JobsJson> {
        (file_sets(config, &self.folders) == self.files).then(|| JobsJson {
            pending: self.pending.clone(),
            running: self.running_json(config),
            finished: self.finished.clone(),
        })
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

    /// `listjobs.json`'s arrays for `projects` (all, or only `project`'s).
    pub async fn jobs_json(
        &self,
        store: &Store,
        config: &Arc<Config>,
        projects: Vec<String>,
        project: Option<String>,
    ) -> Result<JobsJson, StoreError> {
        let generation = store.generation();
        let cached = self
            .views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&project)
            .filter(|v| v.generation == generation && v.projects == projects)
            .cloned();
        if let Some(json) = cached.and_then(|v| v.json(config)) {
            return Ok(json);
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
        let build_config = config.clone();
        let view = tokio::task::spawn_blocking(move || {
            JobsView::new(&build_config, seen, projects, snapshot)
        })
        .await
        .map(Arc::new)
        .map_err(|_| StoreError::Closed)?;
        let json = JobsJson {
            pending: view.pending.clone(),
            running: view.running_json(config),
            finished: view.finished.clone(),
        };
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        // Views of older generations are of no more use.
        views.retain(|_, v| v.generation >= seen);
        if views.get(&project).is_none_or(|v| v.generation <= seen) {
            views.insert(project, view);
        }
        Ok(json)
    }
}
