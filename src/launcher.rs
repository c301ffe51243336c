//! The launcher: one task that owns the running crawls. It is woken by events — a schedule, a
//! process exit, a cancel — and starts pending jobs the moment a slot is free (`poll_interval`
//! is only a safety net). Every child runs `scrapy crawl` through the runner in its own process
//! group; the launcher reaps every child and records its end, so no job vanishes and no slot is
//! held by a job that is not running.

use crate::config::{Config, ItemsDir};
use crate::eggs::EggStore;
use crate::names;
use crate::runner::{self, ProjectSource};
use crate::storage::Storage;
use crate::storage::model::{
    Ending, JobKey, JobRecord, Orphan, Outcome, RegistryLaunch, Retention, now_micros,
};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What a part built on the core adds to the crawls (the Scrapy Cloud API gives a job with a
/// registry entry its data folder and environment). The launcher calls it and knows nothing
/// else of it.
pub trait LaunchExtension: Send + Sync + 'static {
    /// Environment variables for a crawl whose registry entry has this key and stored
    /// environment. An error fails the launch with that message.
    fn environment(&self, registry: &RegistryLaunch) -> Result<Vec<(String, String)>, String>;
    /// The retention dropped these jobs' registry entries.
    fn pruned(&self, keys: Vec<JobKey>);
}

/// How often a re-adopted crawl (not our child: no exit notification) is checked.
const ADOPTED_CHECK: Duration = Duration::from_millis(200);

/// The shortest safety-net poll (a `poll_interval` that rounds to zero would spin).
const MIN_POLL: Duration = Duration::from_millis(10);

pub use crate::process::{parse_signal, signal_group};

enum Event {
    Wake,
    /// This node lost its registration: its crawls' jobs are already recorded `lost` by
    /// another node, so they are killed.
    AbandonAll,
    Cancel {
        project: String,
        job: String,
        signal: Signal,
        reply: oneshot::Sender<usize>,
    },
    /// A crawl ended. `status` is `None` for a re-adopted crawl (not our child).
    Exited {
        id: i64,
        status: Option<std::io::Result<ExitStatus>>,
    },
    /// `cancel_timeout` passed after the cancel number `cancels` of a crawl.
    Escalate {
        id: i64,
        cancels: u32,
    },
}

/// A handle to the launcher task.
#[derive(Clone)]
pub struct LauncherHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl LauncherHandle {
    /// Tells the launcher that a job may be waiting.
    pub fn wake(&self) {
        let _ = self.tx.send(Event::Wake);
    }

    /// Kills every crawl of this node (its registration was taken over; see `crate::node`).
    pub fn abandon_all(&self) {
        let _ = self.tx.send(Event::AbandonAll);
    }

    /// Signals the running jobs of `project` with id `job` (a second cancel kills them);
    /// returns how many were running.
    pub async fn cancel(&self, project: &str, job: &str, signal: Signal) -> usize {
        let (reply, rx) = oneshot::channel();
        let event = Event::Cancel {
            project: project.to_owned(),
            job: job.to_owned(),
            signal,
            reply,
        };
        if self.tx.send(event).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

struct Running {
    record: JobRecord,
    pid: u32,
    cancels: u32,
    /// The cancels asked through other nodes already applied (see `apply_remote_cancels`).
    remote_cancels: u32,
    log: Option<PathBuf>,
}

/// What the runner reports when a crawl exits (see `runner.py`).
#[derive(Debug, Default, serde::Deserialize)]
struct RunResult {
    exit_code: Option<i32>,
    finish_reason: Option<String>,
    stats: Option<serde_json::Value>,
}

/// Scrapy finish reasons that mean the crawl did not end as its author intended.
const FAILED_REASONS: [&str; 2] = ["closespider_errorcount", "shutdown"];

/// The outcome of a crawl from how it ended.
fn outcome(
    cancelled: bool,
    exit_code: Option<i32>,
    signal: Option<i32>,
    finish_reason: Option<&str>,
) -> Outcome {
    if cancelled {
        return Outcome::Cancelled;
    }
    match (exit_code, signal) {
        (_, Some(_)) => Outcome::Killed,
        (Some(0), None) if finish_reason.is_some_and(|r| FAILED_REASONS.contains(&r)) => {
            Outcome::Failed
        }
        (Some(0), None) => Outcome::Finished,
        (Some(_), None) => Outcome::Failed,
        (None, None) => Outcome::Lost,
    }
}

/// The launcher task's state.
pub struct Launcher {
    config: Arc<Config>,
    storage: Storage,
    eggs: Arc<EggStore>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    running: HashMap<i64, Running>,
    capacity: usize,
    /// Ends that could not be written yet (the database was unavailable); retried each turn.
    unrecorded: Vec<(i64, Ending)>,
    /// Where crawls leave their result files (`{id}.json`).
    results: PathBuf,
    extension: Arc<dyn LaunchExtension>,
}

/// The variable that tells a crawl's runner where to write its result file.
const RESULT_ENV: &str = "SCRAPYD_RS_RESULT";

/// The result file of the job of row `id`, in `results`.
fn result_file(results: &Path, id: i64) -> PathBuf {
    results.join(format!("{id}.json"))
}

/// The crawl of `record`, a job recorded as running without a pid: a daemon killed between
/// spawning it and recording its pid left it running, or it has ended since and left its
/// result file. Its process is the group leader whose environment names the job's result file
/// (one per row) and whose arguments carry its job id.
pub fn orphan_of(results: &Path, record: &JobRecord) -> Option<Orphan> {
    let result = result_file(results, record.id);
    let entry = format!("{RESULT_ENV}={}", result.display());
    let job = format!("_job={}", record.job);
    for (pid, has_entry) in crate::process::leaders_with_argument(&job, &entry) {
        match has_entry {
            Some(true) => {
                if let Some(identity) = crate::process::identity(pid) {
                    return Some(Orphan::Running { pid, identity });
                }
            }
            Some(false) => {}
            None => tracing::warn!(
                "process {pid} has the arguments of job {} but its environment cannot be read: \
                 not adopted",
                record.job
            ),
        }
    }
    result.exists().then_some(Orphan::Ended)
}

impl Launcher {
    /// Creates the launcher and its handle; run it with [`Launcher::run`].
    pub fn new(
        config: Arc<Config>,
        storage: Storage,
        eggs: Arc<EggStore>,
        results: PathBuf,
        extension: Arc<dyn LaunchExtension>,
    ) -> (Launcher, LauncherHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = config.capacity();
        let handle = LauncherHandle { tx: tx.clone() };
        (
            Launcher {
                config,
                storage,
                eggs,
                tx,
                rx,
                running: HashMap::new(),
                unrecorded: Vec::new(),
                capacity,
                results,
                extension,
            },
            handle,
        )
    }

    /// Takes over the jobs a previous daemon left running: each one whose process is still
    /// alive is re-adopted, the others are recorded as finished. The daemon awaits this before
    /// it serves, so no client ever sees a crawl that ended while it was down as running.
    pub async fn adopt_left_running(&mut self, left_running: Vec<JobRecord>) {
        for record in left_running {
            self.adopt(record).await;
        }
    }

    /// Runs until `shutdown` is cancelled, then stops the crawls (SIGINT, then SIGKILL after
    /// `shutdown_timeout`), reaps them and records their end — or, with
    /// `leave_crawls_running`, leaves them for the next start to re-adopt.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            "Launcher started: max_proc={}, python={:?}",
            self.capacity,
            self.eggs.runner().python()
        );
        let mut tick = tokio::time::interval(self.config.poll_interval.max(MIN_POLL));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A stop asked for during start-up (or while handling an event) starts no crawl.
            if shutdown.is_cancelled() {
                break;
            }
            self.retry_unrecorded().await;
            self.apply_remote_cancels().await;
            self.fill().await;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = self.rx.recv() => self.handle(event).await,
                _ = tick.tick() => {}
            }
        }
        self.stop_all().await;
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Wake => {}
            Event::AbandonAll => {
                for r in self.running.values_mut() {
                    r.cancels += 1;
                    tracing::warn!(job = %r.record.job, pid = r.pid, "killing an abandoned crawl");
                    signal_group(r.pid, Signal::SIGKILL);
                }
            }
            Event::Cancel {
                project,
                job,
                signal,
                reply,
            } => {
                let ids: Vec<i64> = self
                    .running
                    .values()
                    .filter(|r| r.record.project == project && r.record.job == job)
                    .map(|r| r.record.id)
                    .collect();
                for &id in &ids {
                    self.signal_crawl(id, signal);
                }
                // On a cluster, the crawls of this job that other nodes run hear it too.
                let remote = match self
                    .storage
                    .request_cancel(&project, &job, signal.as_str())
                    .await
                {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!("cannot pass the cancel of {job} to the other nodes: {e}");
                        0
                    }
                };
                let _ = reply.send(ids.len() + remote);
            }
            Event::Exited { id, status } => self.exited(id, status).await,
            Event::Escalate { id, cancels } => {
                if let Some(r) = self.running.get(&id)
                    && r.cancels == cancels
                {
                    tracing::warn!(
                        project = %r.record.project, job = %r.record.job, pid = r.pid,
                        "still running {:?} after the cancel: killing its process group",
                        self.config.cancel_timeout
                    );
                    signal_group(r.pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// Signals the crawl of row `id` for a cancel (the second and later ones kill it); after
    /// `cancel_timeout` a crawl still running is killed.
    fn signal_crawl(&mut self, id: i64, signal: Signal) {
        let Some(r) = self.running.get_mut(&id) else {
            return;
        };
        r.cancels += 1;
        let sig = if r.cancels > 1 {
            Signal::SIGKILL
        } else {
            signal
        };
        let timeout = self.config.cancel_timeout;
        if sig != Signal::SIGKILL && !timeout.is_zero() {
            let (tx, cancels) = (self.tx.clone(), r.cancels);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                let _ = tx.send(Event::Escalate { id, cancels });
            });
        }
        tracing::info!(project = %r.record.project, job = %r.record.job, pid = r.pid, signal = %sig, "cancelling");
        signal_group(r.pid, sig);
    }

    /// Applies, once each, the cancels that other nodes recorded for this node's crawls.
    async fn apply_remote_cancels(&mut self) {
        if self.running.is_empty() || !self.storage.is_shared() {
            return;
        }
        let requests = match self.storage.cancel_requests().await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::warn!("cannot read the cancels asked through other nodes: {e}");
                return;
            }
        };
        for request in requests {
            let Some(r) = self.running.get_mut(&request.id) else {
                continue;
            };
            let new = request.count.saturating_sub(r.remote_cancels);
            r.remote_cancels = request.count.max(r.remote_cancels);
            let signal = crate::process::parse_signal(&request.signal).unwrap_or(Signal::SIGINT);
            for _ in 0..new {
                self.signal_crawl(request.id, signal);
            }
        }
    }

    /// Records a job's end; if the database refuses, keeps it to retry (the job stays listed as
    /// running meanwhile, never lost).
    async fn record_end(&mut self, id: i64, ending: Ending) {
        let retention = Retention {
            finished_to_keep: self.config.finished_to_keep,
            jobdata_to_keep: self.config.jobdata_to_keep,
        };
        let recorded = self.storage.finish(id, ending.clone(), retention).await;
        match recorded {
            Ok(pruned) => self.extension.pruned(pruned),
            Err(e) => {
                tracing::error!("cannot record the end of job row {id} yet: {e}");
                self.unrecorded.push((id, ending));
            }
        }
    }

    async fn retry_unrecorded(&mut self) {
        for (id, ending) in std::mem::take(&mut self.unrecorded) {
            self.record_end(id, ending).await;
        }
    }

    /// Starts pending jobs while slots are free.
    async fn fill(&mut self) {
        if self.running.len() < self.capacity
            && let Err(e) = self.eggs.sync().await
        {
            // A job is claimed only by a node that has its egg: none until the mirror is back.
            tracing::error!("cannot bring the eggs up to date: {}", e.message);
            return;
        }
        while self.running.len() < self.capacity {
            let projects = self.eggs.projects();
            let next = self.storage.claim_next(projects, now_micros()).await;
            match next {
                Ok(Some(claim)) => self.launch(claim.record, claim.registry).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("cannot read the spider queues: {e}");
                    break;
                }
            }
        }
    }

    async fn launch(&mut self, record: JobRecord, registry: Option<RegistryLaunch>) {
        match self.spawn(&record, registry.as_ref()).await {
            Ok((pid, log)) => {
                tracing::info!(
                    log = %log.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                    "Process started: project={} spider={} job={} pid={}",
                    record.project, record.spider, record.job, pid
                );
                let id = record.id;
                let identity = crate::process::identity(pid);
                let _ = self.storage.set_pid(id, pid, identity).await;
                self.running.insert(
                    id,
                    Running {
                        record,
                        pid,
                        cancels: 0,
                        remote_cancels: 0,
                        log,
                    },
                );
            }
            Err(reason) => {
                tracing::error!(
                    project = %record.project, spider = %record.spider, job = %record.job,
                    "Process could not start: project={} spider={} job={}: {reason}",
                    record.project, record.spider, record.job
                );
                let ending = Ending {
                    end_time: now_micros(),
                    exit_code: None,
                    signal: None,
                    outcome: Outcome::LaunchFailed,
                    reason: Some(reason),
                    finish_reason: None,
                    stats: None,
                };
                self.record_end(record.id, ending).await;
            }
        }
    }

    /// Prepares folders and starts the crawl process; returns its pid and log path.
    async fn spawn(
        &self,
        r: &JobRecord,
        registry: Option<&RegistryLaunch>,
    ) -> Result<(u32, Option<PathBuf>), String> {
        for name in [&r.project, &r.spider, &r.job] {
            if !names::is_safe(name) {
                return Err(format!("DirectoryTraversalError: {name}"));
            }
        }
        let source = self
            .eggs
            .source(&r.project, r.version.as_deref())
            .map_err(|e| e.message)?;
        let mut extra: Vec<(String, String)> = Vec::new();
        let keep = self.config.jobs_to_keep;
        let log = match &self.config.logs_dir {
            Some(dir) => {
                let folder = dir.join(&r.project).join(&r.spider);
                prepare_folder(&folder, keep)
                    .map_err(|e| format!("cannot use {}: {e}", folder.display()))?;
                let path = folder.join(format!("{}.log", r.job));
                extra.push(("LOG_FILE".into(), path.display().to_string()));
                Some(path)
            }
            None => None,
        };
        match &self.config.items_dir {
            ItemsDir::Disabled => {}
            ItemsDir::Local(dir) => {
                let folder = dir.join(&r.project).join(&r.spider);
                prepare_folder(&folder, keep)
                    .map_err(|e| format!("cannot use {}: {e}", folder.display()))?;
                let uri = runner::file_uri(&folder.join(format!("{}.jl", r.job)));
                extra.push(("FEEDS".into(), feeds(&uri)));
            }
            ItemsDir::Url(url) => extra.push((
                "FEEDS".into(),
                feeds(&url_feed(url, &r.project, &r.spider, &r.job)),
            )),
        }
        if let Some(dir) = &self.config.jobs_dir {
            let path = dir.join(&r.project).join(&r.spider).join(&r.job);
            extra.push(("JOBDIR".into(), path.display().to_string()));
        }
        let mut settings = r.settings.clone();
        for (k, v) in extra {
            match settings.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => settings.push((k, v)),
            }
        }
        let version = match &source {
            ProjectSource::Egg { .. } => r.version.as_deref(),
            ProjectSource::Settings { .. } => None,
        };
        let result = self.result_path(r.id);
        let _ = std::fs::remove_file(&result);
        let mut cmd = self.eggs.runner().command(&r.project, &source);
        if let Some(entry) = registry {
            cmd.envs(self.extension.environment(entry)?);
        }
        // Also what tells this crawl's process from any other after a restart (`orphan_of`).
        cmd.env(RESULT_ENV, &result);
        cmd.args(runner::crawl_args(
            &r.spider, &settings, &r.job, version, &r.args,
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.eggs.runner().python()))?;
        let pid = child
            .id()
            .ok_or("the process exited before it could be tracked")?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, pid, false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, pid, true));
        }
        let tx = self.tx.clone();
        let id = r.id;
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Event::Exited {
                id,
                status: Some(status),
            });
        });
        Ok((pid, log))
    }

    fn result_path(&self, id: i64) -> PathBuf {
        result_file(&self.results, id)
    }

    /// Reads (and removes) the result file a crawl's runner wrote when it exited.
    fn take_result(&self, id: i64) -> RunResult {
        let path = self.result_path(id);
        let result = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Takes over a job that a previous daemon left running: if its process is still the one
    /// recorded, it is watched until it exits; otherwise its end is recorded now (from the
    /// runner's result file when the crawl finished meanwhile, else as `lost`).
    async fn adopt(&mut self, record: JobRecord) {
        let id = record.id;
        let pid = record.pid.unwrap_or(0);
        // Without a recorded identity the process cannot be told from another: not adopted.
        let identity = record.proc_start.clone().unwrap_or_default();
        let log = self.config.logs_dir.as_ref().map(|d| {
            d.join(&record.project)
                .join(&record.spider)
                .join(format!("{}.log", record.job))
        });
        let alive = !identity.is_empty() && crate::process::is_alive(pid, &identity);
        tracing::info!(
            "{}: project={} spider={} job={} pid={}",
            if alive {
                "Process re-adopted"
            } else {
                "Process ended while the daemon was down"
            },
            record.project,
            record.spider,
            record.job,
            pid
        );
        self.running.insert(
            id,
            Running {
                record,
                pid,
                cancels: 0,
                remote_cancels: 0,
                log,
            },
        );
        if !alive {
            self.exited(id, None).await;
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while crate::process::is_alive(pid, &identity) {
                tokio::time::sleep(ADOPTED_CHECK).await;
            }
            let _ = tx.send(Event::Exited { id, status: None });
        });
    }

    async fn exited(&mut self, id: i64, status: Option<std::io::Result<ExitStatus>>) {
        let Some(run) = self.running.remove(&id) else {
            return;
        };
        let result = self.take_result(id);
        let (exit_code, signal) = match &status {
            Some(Ok(s)) => (s.code(), s.signal()),
            Some(Err(_)) => (None, None),
            // Not our child: the runner's report is all there is.
            None => (result.exit_code, None),
        };
        let outcome = outcome(
            run.cancels > 0,
            exit_code,
            signal,
            result.finish_reason.as_deref(),
        );
        let r = &run.record;
        let log = run
            .log
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if exit_code == Some(0) {
            tracing::info!(
                log = %log,
                outcome = outcome.as_str(),
                "Process finished: project={} spider={} job={} pid={}", r.project, r.spider, r.job, run.pid
            );
        } else {
            let status = match (exit_code, signal) {
                (Some(c), _) => c.to_string(),
                (None, Some(s)) => format!("signal {s}"),
                _ => "None".into(),
            };
            tracing::warn!(
                log = %log,
                outcome = outcome.as_str(),
                "Process died: exitstatus={status} project={} spider={} job={} pid={}",
                r.project, r.spider, r.job, run.pid
            );
        }
        let reason = match &status {
            Some(Err(e)) => Some(e.to_string()),
            None if exit_code.is_none() => {
                Some("the process ended while the daemon was not watching it".into())
            }
            _ => None,
        };
        let ending = Ending {
            end_time: now_micros(),
            exit_code,
            signal,
            outcome,
            reason,
            finish_reason: result.finish_reason,
            stats: result.stats.map(|s| s.to_string()),
        };
        self.record_end(id, ending).await;
    }

    async fn stop_all(&mut self) {
        if self.running.is_empty() {
            return;
        }
        if self.config.leave_crawls_running {
            tracing::info!(
                "leaving {} crawl(s) running (leave_crawls_running = on): the next start re-adopts them",
                self.running.len()
            );
            return;
        }
        tracing::info!("stopping {} running crawl(s)", self.running.len());
        for r in self.running.values_mut() {
            r.cancels += 1;
            signal_group(r.pid, Signal::SIGINT);
        }
        let deadline = tokio::time::Instant::now() + self.config.shutdown_timeout;
        let mut killed = false;
        while !self.running.is_empty() {
            let wait = if killed {
                Duration::from_secs(30)
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Some(Event::Exited { id, status })) => self.exited(id, status).await,
                Ok(Some(Event::Cancel { reply, .. })) => {
                    let _ = reply.send(0);
                }
                Ok(Some(Event::Wake | Event::AbandonAll | Event::Escalate { .. })) => {}
                Ok(None) => break,
                Err(_) if !killed => {
                    for r in self.running.values() {
                        tracing::warn!(job = %r.record.job, pid = r.pid, "still running after the grace time: killing");
                        signal_group(r.pid, Signal::SIGKILL);
                    }
                    killed = true;
                }
                Err(_) => break,
            }
        }
        self.retry_unrecorded().await;
    }
}

/// Creates a job folder and prunes it to the newest `keep` files (Scrapyd's `jobs_to_keep`,
/// applied before the new job writes its own file; 0 keeps everything).
fn prepare_folder(folder: &Path, keep: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    if keep == 0 {
        return Ok(());
    }
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(folder)?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() > keep {
        files.sort();
        for (_, path) in &files[..files.len() - keep] {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// Scrapy's `FEEDS` setting for one JSON-lines feed, JSON-encoded as Scrapyd does.
fn feeds(uri: &str) -> String {
    crate::pyjson::to_string(&serde_json::json!({ uri: {"format": "jsonlines"} }))
}

/// The feed URI under a remote `items_dir` URL: `{path}/{project}/{spider}/{job}.jl`, keeping
/// the query and fragment.
fn url_feed(url: &str, project: &str, spider: &str, job: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut out = format!("{}/{project}/{spider}/{job}.jl", base.trim_end_matches('/'));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Copies a crawl's stdout or stderr into the daemon log, line by line, until EOF. Bytes that
/// are not UTF-8 are shown lossily; reading never stops early, so the crawl never gets EPIPE.
async fn forward(stream: impl tokio::io::AsyncRead + Unpin, pid: u32, stderr: bool) {
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = Vec::new();
    let which = if stderr { "stderr" } else { "stdout" };
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "scrapyd_rs::crawl", pid, "[{which}] {}", text.trim_end());
            }
            Err(e) => {
                tracing::warn!(pid, "cannot read the crawl's {which}: {e}");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwarding_drains_invalid_utf8_to_the_end() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let task = tokio::spawn(forward(reader, 1, false));
        let mut data = Vec::new();
        for i in 0..500 {
            data.extend_from_slice(format!("line {i} caf").as_bytes());
            data.extend_from_slice(b"\xe9\n");
        }
        // The pipe holds 64 bytes: this only completes if the reader keeps reading.
        tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
            .await
            .unwrap();
        drop(writer);
        task.await.unwrap();
    }

    #[test]
    fn remote_feed_urls_keep_query_and_fragment() {
        assert_eq!(
            url_feed(
                "https://host.example/path?query=value#fragment",
                "p1",
                "s1",
                "j1"
            ),
            "https://host.example/path/p1/s1/j1.jl?query=value#fragment"
        );
        assert_eq!(
            url_feed("https://host.example/path/", "p1", "s1", "j1"),
            "https://host.example/path/p1/s1/j1.jl"
        );
    }

    #[test]
    fn feeds_are_python_json() {
        assert_eq!(
            feeds("file:///x/j.jl"),
            r#"{"file:///x/j.jl": {"format": "jsonlines"}}"#
        );
    }

    #[test]
    fn pruning_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["a.log", "b.log", "c.log"].iter().enumerate() {
            let p = dir.path().join(name);
            std::fs::write(&p, "x").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        prepare_folder(dir.path(), 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["b.log", "c.log"]);
    }
}
