//! The storage conformance suite: each case runs a storage method's contract through the
//! public `Storage` handle, once per backend (`backends!` makes a test per case and backend).
//! Both backends run every case (PostgreSQL on the test support's real server, a database per
//! test), so both are held to the same answers.

use scrapyd_rs::config::DbsDir;
use scrapyd_rs::storage::Storage;
use scrapyd_rs::storage::model::{
    Admission, Batch, CACHE_RETENTION_MS, CloudJob, CollectionRef, CollectionType, Ending,
    FIRST_ALLOCATED_PROJECT_ID, FinishedChange, FinishedJob, FinishedUpdate, JobKey, JobQuery,
    JobState, NewJob, NewRecord, NewRequest, NodeInfo, Orphan, Outcome, PURGE_INTERVAL_MS,
    PageRequest, PendingJob, Registration, RenameOutcome, Retention, SlotRef, StoredRecord,
    Uniqueness,
};
use serde_json::{Map, Value, json};
use std::time::Duration;

mod support;

/// A backend under test, and what keeps its files alive.
struct Backend {
    storage: Storage,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(DbsDir::Dir(dir.path().to_path_buf())).unwrap();
    Backend {
        storage,
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = support::postgres::database();
    let storage = Storage::connect(&url, "node-1").await.unwrap();
    // A node claims jobs only once it is registered.
    let registration = storage
        .register_node(node_info("node-1"), Duration::from_secs(60), None)
        .await
        .unwrap();
    assert!(
        matches!(registration, Registration::Registered(_)),
        "a new database's node registers: {registration:?}"
    );
    Backend {
        storage,
        _dir: None,
    }
}

fn node_info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        url: "http://127.0.0.1:6800".into(),
        max_proc: 4,
    }
}

macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::sqlite();
                    super::$case(&backend.storage).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::postgres().await;
                    super::$case(&backend.storage).await;
                }
            )*
        }
    };
}

backends!(
    claims_take_the_highest_priority_then_the_oldest_of_the_projects_asked,
    a_duplicate_of_an_active_job_is_refused_and_stores_nothing,
    concurrent_enqueues_are_each_stored_once,
    cancel_and_clear_remove_only_pending_jobs,
    a_finished_job_is_reported_with_its_ending_and_pruned_by_retention,
    recovery_requeues_a_claim_without_a_process_and_keeps_the_others,
    a_job_has_its_registry_key_from_its_enqueue_to_its_claim,
    job_status_follows_a_job_from_its_queue_to_its_end,
    set_pid_records_the_process_of_a_running_job_only,
    snapshots_and_counts_read_one_moment_and_keep_one_projects_jobs,
    the_generation_moves_with_a_queue_write_and_not_with_a_read,
    finished_update_gives_the_changes_after_a_version_or_everything,
    finished_newest_gives_the_newest_finished_jobs_with_the_version,
    numeric_projects_keep_their_number_and_others_get_allocated_ids,
    spiders_get_ids_in_order_of_first_sight_and_keep_their_tags,
    spider_listing_lists_deployed_spiders_then_the_registrys,
    a_job_is_read_by_key_with_its_metadata_in_order,
    cloud_jobs_are_filtered_and_paged_newest_first,
    edit_cloud_meta_changes_the_jobs_that_exist_and_counts_them,
    transition_cloud_job_moves_a_job_or_adds_fields,
    prune_keeps_a_spiders_newest_finished_jobs_and_purge_removes_one,
    an_external_job_is_refused_when_its_spider_is_unknown_or_a_duplicate,
    external_jobs_start_highest_priority_then_oldest,
    job_token_is_the_token_of_a_running_job_of_a_known_project,
    activity_is_merged_newest_first_across_projects,
    project_settings_start_with_botgroups_and_keep_their_key_order,
    collections_are_listed_by_name_then_type_in_byte_order,
    collection_rename_and_drop_take_every_type_of_a_name,
    collection_records_are_written_read_and_deleted_by_key,
    cached_collection_records_expire_and_are_purged_at_most_hourly,
    collection_pages_are_key_ranges_or_exact_keys_in_byte_order,
    frontier_add_counts_new_fingerprints_and_queues_their_requests_in_batches,
    frontier_batches_page_in_queue_order_and_are_deleted_by_id,
    frontier_fingerprints_page_in_byte_order,
    frontiers_and_slots_are_listed_in_byte_order_and_deleted_whole,
    nul_and_control_characters_in_keys_and_fingerprints_are_kept_in_byte_order,
    a_registered_node_beats_and_its_live_name_is_refused_to_a_twin,
    a_node_silent_past_the_timeout_is_swept_and_its_running_jobs_are_lost,
);

fn job(project: &str, id: &str, priority: f64, created: i64) -> PendingJob {
    PendingJob {
        priority,
        created,
        ..PendingJob::new(project, "s", id)
    }
}

fn ending(end: i64, outcome: Outcome) -> Ending {
    Ending {
        end_time: end,
        exit_code: Some(if outcome == Outcome::Finished { 0 } else { 1 }),
        signal: None,
        outcome,
        reason: None,
        finish_reason: Some("finished".into()),
        stats: None,
    }
}

async fn admit(storage: &Storage, job: impl Into<NewJob>) -> JobKey {
    match storage.enqueue(job.into()).await.unwrap() {
        Admission::Admitted(key) => key,
        other => panic!("the job is admitted: {other:?}"),
    }
}

fn projects(names: &[&str]) -> Vec<String> {
    names.iter().map(|p| (*p).to_owned()).collect()
}

async fn claimed(storage: &Storage, scope: &[&str]) -> Option<String> {
    storage
        .claim_next(projects(scope), 1)
        .await
        .unwrap()
        .map(|c| c.record.job)
}

async fn claims_take_the_highest_priority_then_the_oldest_of_the_projects_asked(storage: &Storage) {
    assert_eq!(claimed(storage, &["a", "b"]).await, None);
    admit(storage, job("a", "a-low", 0.0, 1)).await;
    admit(storage, job("b", "b-high-new", 5.0, 4)).await;
    admit(storage, job("a", "a-high-old", 5.0, 2)).await;
    admit(storage, job("c", "c-top", 9.0, 3)).await;
    // c is not asked for: its job waits, whatever its priority.
    assert_eq!(
        claimed(storage, &["a", "b"]).await.as_deref(),
        Some("a-high-old")
    );
    assert_eq!(
        claimed(storage, &["a", "b"]).await.as_deref(),
        Some("b-high-new")
    );
    assert_eq!(
        claimed(storage, &["a", "b"]).await.as_deref(),
        Some("a-low")
    );
    assert_eq!(claimed(storage, &["a", "b"]).await, None);
    let snapshot = storage
        .snapshot(projects(&["a", "b", "c"]), None)
        .await
        .unwrap();
    let pending: Vec<&str> = snapshot.pending.iter().map(|p| p.job.as_str()).collect();
    assert_eq!(pending, ["c-top"]);
    assert_eq!(snapshot.running.len(), 3);
    let (_, counts) = storage.counts(projects(&["a", "b", "c"])).await.unwrap();
    assert_eq!((counts.pending, counts.running, counts.finished), (1, 3, 0));
}

async fn a_duplicate_of_an_active_job_is_refused_and_stores_nothing(storage: &Storage) {
    let unique = |id: &str| {
        let mut meta = Map::new();
        meta.insert("unique".into(), "u1".into());
        NewJob {
            job: job("p", id, 0.0, 1),
            meta,
            unique: Uniqueness::Value("u1".into()),
        }
    };
    let first = admit(storage, unique("first")).await;
    match storage.enqueue(unique("second")).await.unwrap() {
        Admission::Duplicate(existing) => assert_eq!(existing, first),
        other => panic!("a duplicate is refused: {other:?}"),
    }
    let (state, _) = storage
        .job_status(Some("p".into()), "second".into(), projects(&["p"]))
        .await
        .unwrap();
    assert_eq!(state, None, "the refused job was not stored");
    // Once the first is no longer active, the same value is admitted again.
    assert_eq!(storage.cancel_pending("p", "first").await.unwrap(), 1);
    admit(storage, unique("third")).await;
    // Without a uniqueness rule, the same job may be queued twice (as Scrapyd allows).
    admit(storage, job("p", "same", 0.0, 1)).await;
    admit(storage, job("p", "same", 0.0, 1)).await;
    let (_, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!(counts.pending, 3);
}

async fn concurrent_enqueues_are_each_stored_once(storage: &Storage) {
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let project = if i % 2 == 0 { "a" } else { "b" };
                storage
                    .enqueue(job(project, &format!("j{i:03}"), 0.0, i).into())
                    .await
            })
        })
        .collect();
    let mut keys = Vec::new();
    for c in calls {
        match c.await.unwrap().unwrap() {
            Admission::Admitted(key) => keys.push(key),
            other => panic!("every job is admitted: {other:?}"),
        }
    }
    keys.sort_by_key(|k| (k.project, k.spider, k.n));
    keys.dedup();
    assert_eq!(keys.len(), 100, "every job has a key of its own");
    let snapshot = storage.snapshot(projects(&["a", "b"]), None).await.unwrap();
    let mut ids: Vec<String> = snapshot.pending.into_iter().map(|p| p.job).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
}

async fn cancel_and_clear_remove_only_pending_jobs(storage: &Storage) {
    for id in ["x", "y", "z"] {
        admit(storage, job("p", id, 0.0, 1)).await;
    }
    admit(storage, job("q", "other", 0.0, 1)).await;
    assert_eq!(claimed(storage, &["p"]).await.as_deref(), Some("x"));
    // A running job is not pending: cancel_pending does not touch it.
    assert_eq!(storage.cancel_pending("p", "x").await.unwrap(), 0);
    assert_eq!(storage.cancel_pending("p", "y").await.unwrap(), 1);
    assert_eq!(storage.cancel_pending("p", "y").await.unwrap(), 0);
    assert_eq!(storage.cancel_pending("p", "nope").await.unwrap(), 0);
    assert_eq!(storage.clear_pending("p").await.unwrap(), 1);
    let (_, counts) = storage.counts(projects(&["p", "q"])).await.unwrap();
    assert_eq!((counts.pending, counts.running), (1, 1));
    let (state, _) = storage
        .job_status(Some("p".into()), "x".into(), projects(&["p"]))
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Running));
}

async fn a_finished_job_is_reported_with_its_ending_and_pruned_by_retention(storage: &Storage) {
    let retention = Retention {
        finished_to_keep: 2,
        jobdata_to_keep: 0,
    };
    for (i, id) in ["j1", "j2", "j3"].into_iter().enumerate() {
        admit(storage, job("p", id, 0.0, i as i64)).await;
        let claim = storage
            .claim_next(projects(&["p"]), 10 + i as i64)
            .await
            .unwrap()
            .unwrap();
        storage
            .set_pid(claim.record.id, 1000 + i as u32, Some("boot/1".into()))
            .await
            .unwrap();
        let outcome = if id == "j2" {
            Outcome::Failed
        } else {
            Outcome::Finished
        };
        storage
            .finish(claim.record.id, ending(100 + i as i64, outcome), retention)
            .await
            .unwrap();
    }
    let (state, record) = storage
        .job_status(Some("p".into()), "j2".into(), projects(&["p"]))
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Finished));
    let record = record.expect("its finished record");
    assert_eq!(record.end_time, Some(101));
    assert_eq!(record.exit_code, Some(1));
    assert_eq!(record.pid, Some(1001));
    assert_eq!(record.finish_reason.as_deref(), Some("finished"));
    // finished_to_keep = 2: the oldest finished job is gone.
    let snapshot = storage.snapshot(projects(&["p"]), None).await.unwrap();
    let mut finished: Vec<&str> = snapshot.finished.iter().map(|r| r.job.as_str()).collect();
    finished.sort();
    assert_eq!(finished, ["j2", "j3"]);
    let (_, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!((counts.pending, counts.running, counts.finished), (0, 0, 2));
}

async fn recovery_requeues_a_claim_without_a_process_and_keeps_the_others(storage: &Storage) {
    for id in ["started", "unstarted", "adopted"] {
        admit(storage, job("p", id, 0.0, 1)).await;
    }
    let started = storage
        .claim_next(projects(&["p"]), 1)
        .await
        .unwrap()
        .unwrap();
    storage
        .set_pid(started.record.id, 4242, Some("boot/1".into()))
        .await
        .unwrap();
    storage.claim_next(projects(&["p"]), 1).await.unwrap();
    storage.claim_next(projects(&["p"]), 1).await.unwrap();
    // "unstarted" has no process; "adopted" is found running.
    let left_running = storage
        .recover(|r| {
            (r.job == "adopted").then(|| Orphan::Running {
                pid: 77,
                identity: "boot/2".into(),
            })
        })
        .await
        .unwrap();
    let mut running: Vec<(&str, Option<u32>)> = left_running
        .iter()
        .map(|r| (r.job.as_str(), r.pid))
        .collect();
    running.sort();
    assert_eq!(running, [("adopted", Some(77)), ("started", Some(4242))]);
    let (state, _) = storage
        .job_status(Some("p".into()), "unstarted".into(), projects(&["p"]))
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Pending));
    assert_eq!(claimed(storage, &["p"]).await.as_deref(), Some("unstarted"));
}

async fn a_job_has_its_registry_key_from_its_enqueue_to_its_claim(storage: &Storage) {
    let key = admit(storage, job("p", "j", 0.0, 1)).await;
    assert_eq!(key.project, storage.project_id("p").await.unwrap());
    let claim = storage
        .claim_next(projects(&["p"]), 1)
        .await
        .unwrap()
        .unwrap();
    let registry = claim.registry.expect("a registered job");
    assert_eq!(registry.key, key);
    let cloud = storage
        .cloud_job("p", key)
        .await
        .unwrap()
        .expect("its entry");
    assert_eq!(cloud.state, "running");
    let second = admit(storage, job("p", "k", 0.0, 2)).await;
    assert_eq!((second.project, second.spider), (key.project, key.spider));
    assert!(second.n > key.n, "keys of a spider count up");
}

// ---- Helpers of the cases below

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A JSON object (`json!({…})`) as a metadata or settings map.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// The finished jobs (job id and pid), newest first.
async fn ended(storage: &Storage) -> Vec<(String, Option<u32>)> {
    storage
        .snapshot(Vec::new(), None)
        .await
        .unwrap()
        .finished
        .into_iter()
        .map(|r| (r.job, r.pid))
        .collect()
}

/// Queues, claims and finishes `id` of `project` (ended at `end`, keeping `keep` finished
/// jobs); returns its row id.
async fn run_to_end(storage: &Storage, project: &str, id: &str, end: i64, keep: usize) -> i64 {
    admit(storage, job(project, id, 0.0, end)).await;
    let claim = storage
        .claim_next(projects(&[project]), end - 1)
        .await
        .unwrap()
        .expect("the job just queued");
    assert_eq!(claim.record.job, id);
    let retention = Retention {
        finished_to_keep: keep,
        jobdata_to_keep: 0,
    };
    storage
        .finish(claim.record.id, ending(end, Outcome::Finished), retention)
        .await
        .unwrap();
    claim.record.id
}

/// A finished-jobs update as comparable values: its version, its changes, and the jobs its
/// rows are of (sorted: the rows of changes come in no particular order).
fn update_of(update: FinishedUpdate) -> (&'static str, u64, Vec<FinishedChange>, Vec<String>) {
    match update {
        FinishedUpdate::All(v, rows) => ("all", v, Vec::new(), jobs_of(&rows)),
        FinishedUpdate::Changes(v, changes, rows) => {
            let mut jobs = jobs_of(&rows);
            jobs.sort();
            ("changes", v, changes, jobs)
        }
    }
}

fn jobs_of(rows: &[FinishedJob]) -> Vec<String> {
    rows.iter().map(|r| r.job.clone()).collect()
}

/// A job queued with its registry time (`ts`, ms), tags and spider.
fn tagged(project: &str, spider: &str, id: &str, ts: i64, tags: &[&str]) -> NewJob {
    NewJob {
        job: PendingJob {
            created: ts * 1000,
            ..PendingJob::new(project, spider, id)
        },
        meta: object(json!({ "tags": tags })),
        unique: Uniqueness::None,
    }
}

/// The Scrapyd job ids of registry entries, in the order answered.
fn ids_of(jobs: &[CloudJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.job.as_str()).collect()
}

async fn external(
    storage: &Storage,
    project: &str,
    spider: &str,
    meta: Value,
    state: Option<&str>,
    unique: Uniqueness,
) -> (JobKey, Option<Value>) {
    match storage
        .register_external(
            project,
            spider,
            object(meta),
            state.map(str::to_owned),
            true,
            unique,
        )
        .await
        .unwrap()
    {
        Admission::Admitted(answer) => answer,
        other => panic!("the external job is admitted: {other:?}"),
    }
}

fn collection(project: &str, kind: CollectionType, name: &str) -> CollectionRef {
    CollectionRef {
        project: project.into(),
        kind,
        name: name.into(),
    }
}

fn records(pairs: &[(&str, Value)]) -> Vec<NewRecord> {
    pairs
        .iter()
        .map(|(k, v)| NewRecord {
            key: (*k).to_owned(),
            value: v.to_string(),
        })
        .collect()
}

fn stored(key: &str, ts: i64, value: Value) -> StoredRecord {
    StoredRecord {
        key: key.into(),
        ts,
        value: value.to_string(),
    }
}

fn list(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
        .collect()
}

/// Every record of a collection, expired ones included, by key.
async fn all_records(storage: &Storage, id: i64) -> Vec<String> {
    page(storage, id, None, None, (i64::MIN, i64::MAX), 1000).await
}

async fn page(
    storage: &Storage,
    collection: i64,
    keys: Option<&[&str]>,
    from: Option<(&str, bool)>,
    (min_ts, max_ts): (i64, i64),
    limit: usize,
) -> Vec<String> {
    storage
        .collection_page(PageRequest {
            collection,
            keys: keys.map(strings),
            from: from.map(|(k, inclusive)| (k.to_owned(), inclusive)),
            min_ts,
            max_ts,
            limit,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect()
}

fn slot(project: &str, frontier: &str, name: &str) -> SlotRef {
    SlotRef {
        project: project.into(),
        frontier: frontier.into(),
        slot: name.into(),
    }
}

fn request(fp: &str, priority: i64) -> NewRequest {
    NewRequest {
        fp: fp.into(),
        qdata: Some(json!({ "fp": fp }).to_string()),
        fdata: None,
        priority,
    }
}

/// Batches as `(priority, id, number of requests)`.
fn heads(batches: &[Batch]) -> Vec<(i64, i64, usize)> {
    batches
        .iter()
        .map(|b| (b.priority, b.id, b.requests.len()))
        .collect()
}

async fn slot_id(storage: &Storage, s: SlotRef) -> i64 {
    storage
        .frontier_slot_id(s)
        .await
        .unwrap()
        .expect("the slot exists")
}

// ---- Scrapyd's jobs

async fn job_status_follows_a_job_from_its_queue_to_its_end(storage: &Storage) {
    let status = |project: Option<&str>, job: &str, scope: &[&str]| {
        storage.job_status(project.map(str::to_owned), job.to_owned(), projects(scope))
    };
    assert_eq!(status(Some("p"), "j", &["p"]).await.unwrap(), (None, None));
    admit(storage, job("p", "j", 0.0, 1)).await;
    admit(storage, job("q", "k", 0.0, 2)).await;
    assert_eq!(
        status(Some("p"), "j", &["p"]).await.unwrap(),
        (Some(JobState::Pending), None)
    );
    // Without a project, the pending jobs looked at are those of the projects given.
    assert_eq!(
        status(None, "j", &["q", "p"]).await.unwrap().0,
        Some(JobState::Pending)
    );
    assert_eq!(status(None, "j", &["q"]).await.unwrap().0, None);
    assert_eq!(status(Some("q"), "j", &["p", "q"]).await.unwrap().0, None);
    let claim = storage
        .claim_next(projects(&["p"]), 50)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status(Some("p"), "j", &["p"]).await.unwrap(),
        (Some(JobState::Running), None)
    );
    // A job row is found in any project when none is named.
    assert_eq!(
        status(None, "j", &[]).await.unwrap().0,
        Some(JobState::Running)
    );
    storage
        .set_pid(claim.record.id, 4321, Some("boot/9".into()))
        .await
        .unwrap();
    storage
        .finish(
            claim.record.id,
            ending(60, Outcome::Failed),
            Retention {
                finished_to_keep: 10,
                jobdata_to_keep: 0,
            },
        )
        .await
        .unwrap();
    let (state, record) = status(None, "j", &[]).await.unwrap();
    assert_eq!(state, Some(JobState::Finished));
    let record = record.expect("its finished record");
    assert_eq!(
        (
            record.project.as_str(),
            record.spider.as_str(),
            record.job.as_str()
        ),
        ("p", "s", "j")
    );
    assert_eq!(record.state, JobState::Finished);
    assert_eq!((record.start_time, record.end_time), (50, Some(60)));
    assert_eq!(record.pid, Some(4321));
    assert_eq!(record.proc_start.as_deref(), Some("boot/9"));
    assert_eq!(record.outcome.as_deref(), Some("failed"));
    assert_eq!((record.exit_code, record.signal), (Some(1), None));
    // The same id queued again: finished still wins (Scrapyd's precedence).
    admit(storage, job("p", "j", 0.0, 3)).await;
    assert_eq!(
        status(Some("p"), "j", &["p"]).await.unwrap().0,
        Some(JobState::Finished)
    );
    assert_eq!(
        status(Some("p"), "nope", &["p"]).await.unwrap(),
        (None, None)
    );
}

async fn set_pid_records_the_process_of_a_running_job_only(storage: &Storage) {
    admit(storage, job("p", "j", 0.0, 1)).await;
    let claim = storage
        .claim_next(projects(&["p"]), 5)
        .await
        .unwrap()
        .unwrap();
    let running = storage
        .snapshot(projects(&["p"]), None)
        .await
        .unwrap()
        .running;
    assert_eq!(
        (running[0].pid, running[0].proc_start.clone()),
        (None, None)
    );
    storage.set_pid(claim.record.id, 77, None).await.unwrap();
    storage
        .set_pid(claim.record.id, 78, Some("boot/2".into()))
        .await
        .unwrap();
    // An unknown row id changes nothing.
    storage
        .set_pid(claim.record.id + 1000, 99, Some("boot/3".into()))
        .await
        .unwrap();
    let snapshot = storage.snapshot(projects(&["p"]), None).await.unwrap();
    assert_eq!(snapshot.running.len(), 1);
    let r = &snapshot.running[0];
    assert_eq!(
        (r.id, r.pid, r.proc_start.as_deref()),
        (claim.record.id, Some(78), Some("boot/2"))
    );
    assert_eq!(r.start_time, 5);
    assert!(snapshot.finished.is_empty());
    assert_eq!(ended(storage).await, []);
}

async fn snapshots_and_counts_read_one_moment_and_keep_one_projects_jobs(storage: &Storage) {
    admit(storage, job("p", "p-low", 0.0, 1)).await;
    admit(storage, job("p", "p-high", 3.0, 2)).await;
    admit(storage, job("q", "q-run", 0.0, 3)).await;
    admit(storage, job("q", "q-wait", 0.0, 4)).await;
    admit(storage, job("p", "p-run", 9.0, 5)).await;
    assert_eq!(claimed(storage, &["q"]).await.as_deref(), Some("q-run"));
    assert_eq!(claimed(storage, &["p"]).await.as_deref(), Some("p-run"));
    let p_run = storage
        .snapshot(projects(&["p"]), None)
        .await
        .unwrap()
        .running
        .into_iter()
        .find(|r| r.job == "p-run")
        .unwrap();
    storage
        .finish(
            p_run.id,
            ending(10, Outcome::Finished),
            Retention {
                finished_to_keep: 10,
                jobdata_to_keep: 0,
            },
        )
        .await
        .unwrap();
    let names =
        |pending: &[PendingJob]| -> Vec<String> { pending.iter().map(|p| p.job.clone()).collect() };
    let running = |running: &[scrapyd_rs::storage::model::JobRecord]| -> Vec<String> {
        running.iter().map(|r| r.job.clone()).collect()
    };
    // Pending: the projects in the order asked, each one's in start order.
    let all = storage.snapshot(projects(&["q", "p"]), None).await.unwrap();
    assert_eq!(names(&all.pending), ["q-wait", "p-high", "p-low"]);
    assert_eq!(running(&all.running), ["q-run"]);
    assert_eq!(running(&all.finished), ["p-run"]);
    // `only` keeps one project's running and finished jobs; pending follows `projects`.
    let only_p = storage
        .snapshot(projects(&["q"]), Some("p".into()))
        .await
        .unwrap();
    assert_eq!(names(&only_p.pending), ["q-wait"]);
    assert_eq!(running(&only_p.running), Vec::<String>::new());
    assert_eq!(running(&only_p.finished), ["p-run"]);
    let only_q = storage
        .snapshot(projects(&["p"]), Some("q".into()))
        .await
        .unwrap();
    assert_eq!(names(&only_q.pending), ["p-high", "p-low"]);
    assert_eq!(running(&only_q.running), ["q-run"]);
    assert_eq!(running(&only_q.finished), Vec::<String>::new());
    // Counts: pending of the projects given, running and finished of all.
    let (_, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!((counts.pending, counts.running, counts.finished), (2, 1, 1));
    let (_, counts) = storage.counts(Vec::new()).await.unwrap();
    assert_eq!((counts.pending, counts.running, counts.finished), (0, 1, 1));
    let (_, queue) = storage
        .queue_snapshot(projects(&["p", "q"]), Some("q".into()))
        .await
        .unwrap();
    assert_eq!(names(&queue.pending), ["p-high", "p-low", "q-wait"]);
    assert_eq!(running(&queue.running), ["q-run"]);
    assert_eq!(queue.finished_version, 1);
    let (_, queue) = storage
        .queue_snapshot(projects(&["q"]), Some("p".into()))
        .await
        .unwrap();
    assert_eq!(names(&queue.pending), ["q-wait"]);
    assert!(queue.running.is_empty());
    let (_, queue) = storage.queue_snapshot(Vec::new(), None).await.unwrap();
    assert!(queue.pending.is_empty());
    assert_eq!(running(&queue.running), ["q-run"]);
}

async fn the_generation_moves_with_a_queue_write_and_not_with_a_read(storage: &Storage) {
    let (g0, _) = storage.counts(projects(&["p"])).await.unwrap();
    let (again, _) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!(again, g0, "a read moves nothing");
    let (queued, _) = storage
        .queue_snapshot(projects(&["p"]), None)
        .await
        .unwrap();
    assert_eq!(queued, g0);
    admit(storage, job("p", "j", 0.0, 1)).await;
    let (g1, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_ne!(g1, g0, "a queued job moves the generation");
    assert_eq!(counts.pending, 1);
    assert_eq!(storage.generation(), g1);
    let (g1_again, _) = storage
        .queue_snapshot(projects(&["p"]), None)
        .await
        .unwrap();
    assert_eq!(g1_again, g1);
    // A cancel of nothing writes nothing.
    assert_eq!(storage.cancel_pending("p", "nope").await.unwrap(), 0);
    assert_eq!(storage.counts(projects(&["p"])).await.unwrap().0, g1);
    assert_eq!(storage.cancel_pending("p", "j").await.unwrap(), 1);
    let (g2, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_ne!(g2, g1);
    assert_eq!(counts.pending, 0);
}

async fn finished_update_gives_the_changes_after_a_version_or_everything(storage: &Storage) {
    let update = |since: Option<u64>, project: Option<&str>| {
        let storage = storage.clone();
        let project = project.map(str::to_owned);
        async move { update_of(storage.finished_update(since, project).await.unwrap()) }
    };
    assert_eq!(update(None, None).await, ("all", 0, vec![], vec![]));
    assert_eq!(update(Some(0), None).await, ("changes", 0, vec![], vec![]));
    let j1 = run_to_end(storage, "p", "j1", 100, 2).await;
    assert_eq!(
        update(Some(0), None).await,
        (
            "changes",
            1,
            vec![FinishedChange::Added(j1)],
            strings(&["j1"])
        )
    );
    let j2 = run_to_end(storage, "p", "j2", 200, 2).await;
    assert_eq!(
        update(Some(1), None).await,
        (
            "changes",
            2,
            vec![FinishedChange::Added(j2)],
            strings(&["j2"])
        )
    );
    // finished_to_keep = 2: j3's end removes j1.
    let j3 = run_to_end(storage, "q", "j3", 300, 2).await;
    assert_eq!(storage.finished_version(), 4);
    assert_eq!(
        update(Some(2), None).await,
        (
            "changes",
            4,
            vec![FinishedChange::Added(j3), FinishedChange::Removed(j1)],
            strings(&["j3"])
        )
    );
    // The rows are those of the added jobs still kept.
    assert_eq!(
        update(Some(0), None).await,
        (
            "changes",
            4,
            vec![
                FinishedChange::Added(j1),
                FinishedChange::Added(j2),
                FinishedChange::Added(j3),
                FinishedChange::Removed(j1)
            ],
            strings(&["j2", "j3"])
        )
    );
    assert_eq!(update(Some(4), None).await, ("changes", 4, vec![], vec![]));
    // Everything, newest first: without a version, or from one this storage never had.
    assert_eq!(
        update(None, None).await,
        ("all", 4, vec![], strings(&["j3", "j2"]))
    );
    assert_eq!(
        update(None, Some("p")).await,
        ("all", 4, vec![], strings(&["j2"]))
    );
    assert_eq!(
        update(Some(99), Some("q")).await,
        ("all", 4, vec![], strings(&["j3"]))
    );
    assert_eq!(update(None, Some("nope")).await, ("all", 4, vec![], vec![]));
}

async fn finished_newest_gives_the_newest_finished_jobs_with_the_version(storage: &Storage) {
    assert_eq!(
        storage.finished_newest(None, 10).await.unwrap().0,
        0,
        "no finished job yet"
    );
    let a = run_to_end(storage, "p", "a", 100, 10).await;
    run_to_end(storage, "q", "b", 300, 10).await;
    run_to_end(storage, "p", "c", 200, 10).await;
    let newest = |project: Option<&str>, limit: usize| {
        let storage = storage.clone();
        let project = project.map(str::to_owned);
        async move {
            let (v, rows) = storage.finished_newest(project, limit).await.unwrap();
            (v, jobs_of(&rows))
        }
    };
    // By end time, newest first.
    assert_eq!(newest(None, 10).await, (3, strings(&["b", "c", "a"])));
    assert_eq!(newest(None, 2).await, (3, strings(&["b", "c"])));
    assert_eq!(newest(None, 0).await, (3, vec![]));
    assert_eq!(newest(Some("p"), 10).await, (3, strings(&["c", "a"])));
    assert_eq!(newest(Some("p"), 1).await, (3, strings(&["c"])));
    assert_eq!(newest(Some("nope"), 10).await, (3, vec![]));
    let (_, rows) = storage.finished_newest(Some("p".into()), 10).await.unwrap();
    let oldest = &rows[1];
    assert_eq!(oldest.id, a);
    assert_eq!(
        (oldest.project.as_str(), oldest.spider.as_str()),
        ("p", "s")
    );
    assert_eq!((oldest.start_time, oldest.end_time), (99, 100));
    assert_eq!(oldest.ending.outcome.as_deref(), Some("finished"));
    assert_eq!(oldest.ending.exit_code, Some(0));
    assert_eq!(oldest.ending.finish_reason.as_deref(), Some("finished"));
}

// ---- The Scrapy Cloud registry

async fn numeric_projects_keep_their_number_and_others_get_allocated_ids(storage: &Storage) {
    let first = FIRST_ALLOCATED_PROJECT_ID;
    assert_eq!(
        storage
            .project_ids(strings(&["123", "books", "news", "books", "0123"]))
            .await
            .unwrap(),
        [123, first, first + 1, first, first + 2]
    );
    assert_eq!(storage.project_id("news").await.unwrap(), first + 1);
    assert_eq!(storage.project_id("123").await.unwrap(), 123);
    // A number from the allocated range is a name like any other.
    assert_eq!(
        storage.project_id(&first.to_string()).await.unwrap(),
        first + 3
    );
    assert_eq!(storage.project_id("42").await.unwrap(), 42);
    assert_eq!(
        storage.project_ids(Vec::new()).await.unwrap(),
        Vec::<i64>::new()
    );
    let known = strings(&["123", "books"]);
    assert_eq!(
        storage.project_by_id(123, known.clone()).await.unwrap(),
        Some("123".into())
    );
    assert_eq!(
        storage.project_by_id(first, known.clone()).await.unwrap(),
        Some("books".into())
    );
    // A registered project that is not known (any more) is not found.
    assert_eq!(
        storage
            .project_by_id(first + 1, known.clone())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .project_by_id(first + 1, strings(&["news"]))
            .await
            .unwrap(),
        Some("news".into())
    );
    assert_eq!(storage.project_by_id(777, known).await.unwrap(), None);
    // Known projects are registered as needed.
    assert_eq!(
        storage
            .project_by_id(first + 4, strings(&["fresh"]))
            .await
            .unwrap(),
        Some("fresh".into())
    );
    assert_eq!(
        storage.project_by_id(first + 99, Vec::new()).await.unwrap(),
        None
    );
    assert_eq!(storage.project_id("later").await.unwrap(), first + 5);
}

async fn spiders_get_ids_in_order_of_first_sight_and_keep_their_tags(storage: &Storage) {
    assert_eq!(storage.spider_id("p", "a", false).await.unwrap(), None);
    assert_eq!(storage.spider_name("p", 1).await.unwrap(), None);
    assert_eq!(
        storage.spider_tags("p", "a").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        storage.spider_id("p", "a", false).await.unwrap(),
        None,
        "looking gives no id"
    );
    assert_eq!(storage.spider_id("p", "a", true).await.unwrap(), Some(1));
    assert_eq!(storage.spider_id("p", "b", true).await.unwrap(), Some(2));
    assert_eq!(storage.spider_id("p", "a", true).await.unwrap(), Some(1));
    assert_eq!(storage.spider_id("p", "b", false).await.unwrap(), Some(2));
    // Ids are per project.
    assert_eq!(storage.spider_id("q", "c", true).await.unwrap(), Some(1));
    assert_eq!(storage.spider_name("p", 2).await.unwrap(), Some("b".into()));
    assert_eq!(storage.spider_name("q", 1).await.unwrap(), Some("c".into()));
    assert_eq!(storage.spider_name("q", 2).await.unwrap(), None);
    let update =
        |spider: &'static str, add: &'static [&'static str], remove: &'static [&'static str]| {
            storage.update_spider_tags("p", spider, strings(add), strings(remove))
        };
    assert_eq!(
        update("a", &["x", "y", "x"], &[]).await.unwrap(),
        ["x", "y"]
    );
    assert_eq!(
        update("a", &["z"], &["x", "nope"]).await.unwrap(),
        ["y", "z"]
    );
    assert_eq!(update("a", &[], &[]).await.unwrap(), ["y", "z"]);
    assert_eq!(storage.spider_tags("p", "a").await.unwrap(), ["y", "z"]);
    assert_eq!(
        storage.spider_tags("p", "b").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        storage.spider_tags("q", "a").await.unwrap(),
        Vec::<String>::new()
    );
    // Tagging a spider the registry does not know gives it an id.
    assert_eq!(update("new", &["t"], &[]).await.unwrap(), ["t"]);
    assert_eq!(storage.spider_id("p", "new", false).await.unwrap(), Some(3));
    assert_eq!(storage.spider_tags("p", "new").await.unwrap(), ["t"]);
}

async fn spider_listing_lists_deployed_spiders_then_the_registrys(storage: &Storage) {
    assert_eq!(storage.spider_listing("p", Vec::new()).await.unwrap(), []);
    storage.spider_id("p", "old", true).await.unwrap();
    storage.spider_id("p", "a", true).await.unwrap();
    storage
        .update_spider_tags("p", "a", strings(&["t1"]), Vec::new())
        .await
        .unwrap();
    storage
        .update_spider_tags("p", "old", strings(&["t2"]), Vec::new())
        .await
        .unwrap();
    let listing = storage
        .spider_listing("p", strings(&["d", "a"]))
        .await
        .unwrap();
    assert_eq!(
        listing,
        [
            ("d".to_owned(), true, vec![]),
            ("a".to_owned(), true, strings(&["t1"])),
            ("old".to_owned(), false, strings(&["t2"])),
        ]
    );
    // Deployed spiders are given ids.
    assert_eq!(storage.spider_id("p", "d", false).await.unwrap(), Some(3));
    assert_eq!(storage.spider_listing("q", Vec::new()).await.unwrap(), []);
}

async fn a_job_is_read_by_key_with_its_metadata_in_order(storage: &Storage) {
    let new = NewJob {
        job: PendingJob {
            version: Some("1.0".into()),
            args: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
            settings: vec![("S".into(), "v".into())],
            priority: 7.0,
            created: 5_000_000,
            ..PendingJob::new("p", "s", "j")
        },
        meta: object(json!({"tags": ["t"], "zz": {"y": 1, "b": 2}})),
        unique: Uniqueness::None,
    };
    let key = admit(storage, new).await;
    let project = storage.project_id("p").await.unwrap();
    assert_eq!(
        key,
        JobKey {
            project,
            spider: 1,
            n: 1
        }
    );
    let j = storage
        .cloud_job("p", key)
        .await
        .unwrap()
        .expect("its entry");
    assert_eq!(
        (j.key, j.project.as_str(), j.spider.as_str()),
        (key, "p", "s")
    );
    assert_eq!(
        (j.job.as_str(), j.state.as_str(), j.ts),
        ("j", "pending", 5_000)
    );
    let keys: Vec<&str> = j.meta.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "project",
            "spider",
            "spider_type",
            "state",
            "pending_time",
            "scheduled_by",
            "priority",
            "units",
            "tags",
            "scrapyd_job",
            "version",
            "spider_args",
            "job_settings",
            "zz"
        ]
    );
    assert_eq!(
        Value::Object(j.meta.clone()).to_string(),
        json!({
            "project": project,
            "spider": "s",
            "spider_type": "manual",
            "state": "pending",
            "pending_time": 5_000,
            "scheduled_by": "scrapyd",
            "priority": 4,
            "units": 1,
            "tags": ["t"],
            "scrapyd_job": "j",
            "version": "1.0",
            "spider_args": {"b": "2", "a": "1"},
            "job_settings": {"S": "v"},
            "zz": {"y": 1, "b": 2}
        })
        .to_string()
    );
    // Another project, spider or number: nothing.
    assert!(storage.cloud_job("q", key).await.unwrap().is_none());
    let other = JobKey { n: 2, ..key };
    assert!(storage.cloud_job("p", other).await.unwrap().is_none());
}

async fn cloud_jobs_are_filtered_and_paged_newest_first(storage: &Storage) {
    let mut keys = std::collections::HashMap::new();
    for (spider, id, ts, tags) in [
        ("a", "j1", 1000, &["x"][..]),
        ("b", "j2", 2000, &["y"][..]),
        ("a", "j3", 3000, &["x", "y"][..]),
        ("a", "j4", 4000, &[][..]),
        ("b", "j5", 5000, &["z"][..]),
    ] {
        keys.insert(id, admit(storage, tagged("p", spider, id, ts, tags)).await);
    }
    admit(storage, tagged("q", "a", "other", 6000, &["x"])).await;
    // j2 is cancelled: finished now, the newest change.
    assert_eq!(storage.cancel_pending("p", "j2").await.unwrap(), 1);
    let query = |q: JobQuery| {
        let storage = storage.clone();
        async move {
            let jobs = storage.cloud_jobs("p", q).await.unwrap();
            jobs.iter().map(|j| j.job.clone()).collect::<Vec<String>>()
        }
    };
    let pending = || JobQuery {
        states: strings(&["pending"]),
        ..JobQuery::default()
    };
    assert_eq!(
        query(JobQuery::default()).await,
        ["j2", "j5", "j4", "j3", "j1"]
    );
    assert_eq!(query(pending()).await, ["j5", "j4", "j3", "j1"]);
    let finished = JobQuery {
        states: strings(&["finished"]),
        ..JobQuery::default()
    };
    assert_eq!(query(finished).await, ["j2"]);
    let both = JobQuery {
        states: strings(&["finished", "running"]),
        ..JobQuery::default()
    };
    assert_eq!(query(both).await, ["j2"]);
    let by_name = JobQuery {
        spider: Some("a".into()),
        ..JobQuery::default()
    };
    assert_eq!(query(by_name).await, ["j4", "j3", "j1"]);
    let by_id = JobQuery {
        spider_id: Some(2),
        ..JobQuery::default()
    };
    assert_eq!(query(by_id).await, ["j2", "j5"]);
    // A spider the registry does not know selects nothing, and is not given an id.
    let unknown = JobQuery {
        spider: Some("zz".into()),
        ..JobQuery::default()
    };
    assert_eq!(query(unknown).await, Vec::<String>::new());
    assert_eq!(storage.spider_id("p", "zz", false).await.unwrap(), None);
    // has_tag: any of them; lacks_tag: none of them.
    let has = |tags: &[&str]| JobQuery {
        has_tag: strings(tags),
        ..JobQuery::default()
    };
    assert_eq!(query(has(&["y"])).await, ["j2", "j3"]);
    assert_eq!(query(has(&["x", "z"])).await, ["j5", "j3", "j1"]);
    assert_eq!(query(has(&["none"])).await, Vec::<String>::new());
    let lacks = JobQuery {
        lacks_tag: strings(&["x", "z"]),
        ..JobQuery::default()
    };
    assert_eq!(query(lacks).await, ["j2", "j4"]);
    // startts <= ts < endts.
    let window = JobQuery {
        startts: Some(2000),
        endts: Some(5000),
        ..JobQuery::default()
    };
    assert_eq!(query(window).await, ["j4", "j3"]);
    let since = JobQuery {
        startts: Some(3000),
        ..pending()
    };
    assert_eq!(query(since).await, ["j5", "j4", "j3"]);
    let before = JobQuery {
        endts: Some(3000),
        ..JobQuery::default()
    };
    assert_eq!(query(before).await, ["j1"]);
    // skip, then count; stop ends the listing before that job.
    let paged = JobQuery {
        skip: 1,
        count: Some(2),
        ..pending()
    };
    assert_eq!(query(paged).await, ["j4", "j3"]);
    let none = JobQuery {
        count: Some(0),
        ..JobQuery::default()
    };
    assert_eq!(query(none).await, Vec::<String>::new());
    let beyond = JobQuery {
        skip: 9,
        ..JobQuery::default()
    };
    assert_eq!(query(beyond).await, Vec::<String>::new());
    let stop = JobQuery {
        stop: Some(keys["j3"]),
        ..pending()
    };
    assert_eq!(query(stop).await, ["j5", "j4"]);
    let by_keys = JobQuery {
        keys: vec![keys["j1"], keys["j5"]],
        ..JobQuery::default()
    };
    assert_eq!(query(by_keys).await, ["j5", "j1"]);
    let combined = JobQuery {
        spider: Some("a".into()),
        has_tag: strings(&["x"]),
        skip: 1,
        ..pending()
    };
    assert_eq!(query(combined).await, ["j1"]);
    // Several queries read in one step, each answered in order.
    let each = storage
        .cloud_jobs_each(
            "p",
            vec![
                pending(),
                has(&["z"]),
                JobQuery {
                    states: strings(&["deleted"]),
                    ..JobQuery::default()
                },
            ],
        )
        .await
        .unwrap();
    let each: Vec<Vec<&str>> = each.iter().map(|jobs| ids_of(jobs)).collect();
    assert_eq!(
        each,
        [vec!["j5", "j4", "j3", "j1"], vec!["j5"], Vec::<&str>::new()]
    );
    assert_eq!(
        storage
            .cloud_jobs_each("p", Vec::new())
            .await
            .unwrap()
            .len(),
        0
    );
    let other = storage.cloud_jobs("q", JobQuery::default()).await.unwrap();
    assert_eq!(ids_of(&other), ["other"]);
}

async fn edit_cloud_meta_changes_the_jobs_that_exist_and_counts_them(storage: &Storage) {
    let k1 = admit(storage, job("p", "j1", 0.0, 1)).await;
    let k2 = admit(storage, job("p", "j2", 0.0, 2)).await;
    let k3 = admit(storage, job("p", "j3", 0.0, 3)).await;
    let missing = JobKey { n: 99, ..k1 };
    let edited = storage
        .edit_cloud_meta("p", vec![k1, missing, k2], |meta| {
            meta.remove("units");
            meta.insert("note".into(), json!({"b": 1, "a": [2]}));
        })
        .await
        .unwrap();
    assert_eq!(edited, 2);
    for key in [k1, k2] {
        let meta = storage.cloud_job("p", key).await.unwrap().unwrap().meta;
        assert_eq!(meta.get("units"), None);
        assert_eq!(meta.keys().next_back().map(String::as_str), Some("note"));
        assert_eq!(meta["note"].to_string(), r#"{"b":1,"a":[2]}"#);
        assert_eq!(meta["state"], "pending");
    }
    let untouched = storage.cloud_job("p", k3).await.unwrap().unwrap().meta;
    assert_eq!(untouched["units"], 1);
    assert_eq!(untouched.get("note"), None);
    assert!(storage.cloud_job("p", missing).await.unwrap().is_none());
    // A key of the project in another project: not there.
    assert_eq!(
        storage
            .edit_cloud_meta("q", vec![k1], |meta| {
                meta.insert("x".into(), 1.into());
            })
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        storage
            .edit_cloud_meta("p", Vec::new(), |_| {})
            .await
            .unwrap(),
        0
    );
    let jobs = storage.cloud_jobs("p", JobQuery::default()).await.unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j.meta.get("x").is_none()));
}

async fn transition_cloud_job_moves_a_job_or_adds_fields(storage: &Storage) {
    let key = admit(storage, job("p", "j", 0.0, 1_000_000)).await;
    storage
        .transition_cloud_job("p", key, None, "nobody", object(json!({"extra": 1})))
        .await
        .unwrap();
    let j = storage.cloud_job("p", key).await.unwrap().unwrap();
    assert_eq!((j.state.as_str(), j.ts), ("pending", 1_000));
    assert_eq!(j.meta["extra"], 1);
    assert_eq!(j.meta.keys().next_back().map(String::as_str), Some("extra"));
    let before = chrono::Utc::now().timestamp_millis();
    storage
        .transition_cloud_job(
            "p",
            key,
            Some("finished".into()),
            "alice",
            object(json!({"close_reason": "done"})),
        )
        .await
        .unwrap();
    let after = chrono::Utc::now().timestamp_millis();
    let j = storage.cloud_job("p", key).await.unwrap().unwrap();
    assert_eq!(j.state, "finished");
    assert!(
        (before..=after).contains(&j.ts),
        "{} in {before}..={after}",
        j.ts
    );
    assert_eq!(j.meta["state"], "finished");
    assert_eq!(j.meta["finished_time"], j.ts);
    assert_eq!(j.meta["completed_by"], "alice");
    assert_eq!(j.meta["close_reason"], "done");
    assert_eq!(j.meta["extra"], 1);
    let events = storage.activity(projects(&["p"]), 1).await.unwrap();
    assert_eq!(
        Value::Object(events[0].event.clone()),
        json!({"event": "job:completed", "job": key.to_string(), "user": "alice"})
    );
    // A job that is not there: nothing, and no event.
    let missing = JobKey { n: 9, ..key };
    storage
        .transition_cloud_job("p", missing, Some("running".into()), "bob", Map::new())
        .await
        .unwrap();
    storage
        .transition_cloud_job("p", missing, None, "bob", object(json!({"x": 1})))
        .await
        .unwrap();
    assert!(storage.cloud_job("p", missing).await.unwrap().is_none());
    assert_eq!(
        storage
            .cloud_jobs("p", JobQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );
    let events = storage.activity(projects(&["p"]), 10).await.unwrap();
    assert_eq!(events.len(), 2, "scheduled and completed only");
}

async fn prune_keeps_a_spiders_newest_finished_jobs_and_purge_removes_one(storage: &Storage) {
    let mut finished = Vec::new();
    for _ in 0..3 {
        let (key, token) = external(
            storage,
            "p",
            "s",
            json!({}),
            Some("finished"),
            Uniqueness::None,
        )
        .await;
        assert_eq!(token, None, "only a running job has a token");
        finished.push(key);
    }
    let (pending, _) = external(storage, "p", "s", json!({}), None, Uniqueness::None).await;
    let (other_spider, _) = external(
        storage,
        "p",
        "t",
        json!({}),
        Some("finished"),
        Uniqueness::None,
    )
    .await;
    assert_eq!(
        storage.prune_cloud_jobs("p", "s", 0).await.unwrap(),
        [],
        "0 keeps all"
    );
    assert_eq!(storage.prune_cloud_jobs("p", "nope", 1).await.unwrap(), []);
    assert_eq!(storage.prune_cloud_jobs("q", "s", 1).await.unwrap(), []);
    let mut removed = storage.prune_cloud_jobs("p", "s", 1).await.unwrap();
    removed.sort_by_key(|k| k.n);
    assert_eq!(removed, finished[..2]);
    assert_eq!(storage.prune_cloud_jobs("p", "s", 1).await.unwrap(), []);
    let left: Vec<JobKey> = storage
        .cloud_jobs("p", JobQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|j| j.key)
        .collect();
    let mut left_sorted = left.clone();
    left_sorted.sort_by_key(|k| (k.spider, k.n));
    assert_eq!(left_sorted, [finished[2], pending, other_spider]);
    assert_eq!(storage.purge_cloud_job("p", pending).await.unwrap(), 1);
    assert_eq!(storage.purge_cloud_job("p", pending).await.unwrap(), 0);
    assert_eq!(storage.purge_cloud_job("q", finished[2]).await.unwrap(), 0);
    assert!(storage.cloud_job("p", pending).await.unwrap().is_none());
    assert!(storage.cloud_job("p", finished[2]).await.unwrap().is_some());
    // Numbers are never given again.
    let (next, _) = external(storage, "p", "s", json!({}), None, Uniqueness::None).await;
    assert_eq!(next.n, pending.n + 1);
}

async fn an_external_job_is_refused_when_its_spider_is_unknown_or_a_duplicate(storage: &Storage) {
    let refused = storage
        .register_external("p", "s", Map::new(), None, false, Uniqueness::None)
        .await
        .unwrap();
    assert_eq!(refused, Admission::UnknownSpider);
    assert_eq!(storage.spider_id("p", "s", false).await.unwrap(), None);
    assert!(
        storage
            .cloud_jobs("p", JobQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let unique = || Uniqueness::Value("u".into());
    let (first, _) = external(storage, "p", "s", json!({"unique": "u"}), None, unique()).await;
    // The spider is known now: a job may be registered without adding it.
    let known = storage
        .register_external("p", "s", Map::new(), None, false, Uniqueness::None)
        .await
        .unwrap();
    assert!(matches!(known, Admission::Admitted(_)), "{known:?}");
    let duplicate = storage
        .register_external(
            "p",
            "s",
            object(json!({"unique": "u"})),
            None,
            true,
            unique(),
        )
        .await
        .unwrap();
    assert_eq!(duplicate, Admission::Duplicate(first));
    // Of another spider, the same value is a duplicate too; of another project it is not.
    let duplicate = storage
        .register_external(
            "p",
            "t",
            object(json!({"unique": "u"})),
            None,
            true,
            unique(),
        )
        .await
        .unwrap();
    assert_eq!(duplicate, Admission::Duplicate(first));
    assert_eq!(storage.spider_id("p", "t", false).await.unwrap(), None);
    external(storage, "q", "s", json!({"unique": "u"}), None, unique()).await;
    assert_eq!(
        storage
            .cloud_jobs("p", JobQuery::default())
            .await
            .unwrap()
            .len(),
        2,
        "the refused jobs stored nothing"
    );
    // Same arguments: of the same spider only.
    let args = |a: &str| json!({"spider_args": {"a": a}});
    let (with_args, _) = external(
        storage,
        "p",
        "t",
        args("1"),
        None,
        Uniqueness::SameArguments,
    )
    .await;
    let same = storage
        .register_external(
            "p",
            "t",
            object(args("1")),
            None,
            true,
            Uniqueness::SameArguments,
        )
        .await
        .unwrap();
    assert_eq!(same, Admission::Duplicate(with_args));
    external(
        storage,
        "p",
        "t",
        args("2"),
        None,
        Uniqueness::SameArguments,
    )
    .await;
    // A running duplicate is active too; a finished one is not.
    storage
        .transition_cloud_job("p", first, Some("running".into()), "x", Map::new())
        .await
        .unwrap();
    let duplicate = storage
        .register_external(
            "p",
            "s",
            object(json!({"unique": "u"})),
            None,
            true,
            unique(),
        )
        .await
        .unwrap();
    assert_eq!(duplicate, Admission::Duplicate(first));
    storage
        .transition_cloud_job("p", first, Some("finished".into()), "x", Map::new())
        .await
        .unwrap();
    external(storage, "p", "s", json!({"unique": "u"}), None, unique()).await;
    assert_eq!(
        storage
            .cloud_jobs("p", JobQuery::default())
            .await
            .unwrap()
            .len(),
        5
    );
}

async fn external_jobs_start_highest_priority_then_oldest(storage: &Storage) {
    assert!(
        storage
            .start_external("p", Map::new())
            .await
            .unwrap()
            .is_none()
    );
    let (low, _) = external(
        storage,
        "p",
        "s",
        json!({"priority": 1}),
        None,
        Uniqueness::None,
    )
    .await;
    let (high, _) = external(
        storage,
        "p",
        "s",
        json!({"priority": 3}),
        None,
        Uniqueness::None,
    )
    .await;
    let (high_later, _) = external(
        storage,
        "p",
        "t",
        json!({"priority": 3}),
        None,
        Uniqueness::None,
    )
    .await;
    let (default, _) = external(storage, "p", "s", json!({}), None, Uniqueness::None).await;
    // A Scrapyd job is not an external runner's, whatever its priority.
    admit(storage, job("p", "scrapyd", 4.0, 1)).await;
    external(
        storage,
        "q",
        "s",
        json!({"priority": 4}),
        None,
        Uniqueness::None,
    )
    .await;
    let (running, token) = external(
        storage,
        "p",
        "s",
        json!({"priority": 4}),
        Some("running"),
        Uniqueness::None,
    )
    .await;
    let token = token.expect("a running job's token");
    assert!(token.as_str().is_some_and(|t| !t.is_empty()), "{token}");
    let j = storage.cloud_job("p", running).await.unwrap().unwrap();
    assert_eq!((j.state.as_str(), &j.meta["auth"]), ("running", &token));
    assert_eq!(j.meta["external"], true);
    let mut order = Vec::new();
    while let Some(job) = storage
        .start_external("p", object(json!({"runner": "r1"})))
        .await
        .unwrap()
    {
        assert_eq!(job.state, "running");
        assert_eq!(job.meta["runner"], "r1");
        assert_eq!(job.meta["started_by"], "jobrunner");
        let stored = storage.cloud_job("p", job.key).await.unwrap().unwrap();
        assert_eq!(stored.state, "running");
        assert_eq!(stored.meta["auth"], job.meta["auth"]);
        assert!(job.meta["auth"].as_str().is_some_and(|t| !t.is_empty()));
        order.push(job.key);
    }
    assert_eq!(order, [high, high_later, default, low]);
    let (_, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!(counts.pending, 1, "the Scrapyd job still waits");
    let scrapyd = storage
        .cloud_jobs(
            "p",
            JobQuery {
                states: strings(&["pending"]),
                ..JobQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids_of(&scrapyd), ["scrapyd"]);
}

async fn job_token_is_the_token_of_a_running_job_of_a_known_project(storage: &Storage) {
    let (running, token) = external(
        storage,
        "p",
        "s",
        json!({}),
        Some("running"),
        Uniqueness::None,
    )
    .await;
    let token = token.and_then(|t| t.as_str().map(str::to_owned));
    assert!(token.is_some());
    assert_eq!(
        storage.job_token(running, strings(&["p"])).await.unwrap(),
        token
    );
    // Of a project not among the known ones, or of another project id: none.
    assert_eq!(
        storage.job_token(running, strings(&["q"])).await.unwrap(),
        None
    );
    let elsewhere = JobKey {
        project: running.project + 1,
        ..running
    };
    assert_eq!(
        storage.job_token(elsewhere, strings(&["p"])).await.unwrap(),
        None
    );
    let (pending, _) = external(storage, "p", "s", json!({}), None, Uniqueness::None).await;
    assert_eq!(
        storage.job_token(pending, strings(&["p"])).await.unwrap(),
        None
    );
    let missing = JobKey { n: 99, ..running };
    assert_eq!(
        storage.job_token(missing, strings(&["p"])).await.unwrap(),
        None
    );
    // A Scrapyd job runs without a token.
    let key = admit(storage, job("p", "j", 0.0, 1)).await;
    claimed(storage, &["p"]).await.expect("claimed");
    assert_eq!(storage.job_token(key, strings(&["p"])).await.unwrap(), None);
    // Once finished, the token is no longer answered.
    storage
        .transition_cloud_job("p", running, Some("finished".into()), "x", Map::new())
        .await
        .unwrap();
    assert_eq!(
        storage.job_token(running, strings(&["p"])).await.unwrap(),
        None
    );
}

// ---- Activity and project settings

async fn activity_is_merged_newest_first_across_projects(storage: &Storage) {
    assert!(
        storage
            .activity(projects(&["p"]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let event = |n: i64| object(json!({"event": "e", "n": n, "z": 0, "a": 1}));
    let before = chrono::Utc::now().timestamp_millis();
    storage
        .add_activity("p", vec![event(1), event(2)])
        .await
        .unwrap();
    storage.add_activity("q", vec![event(3)]).await.unwrap();
    storage.add_activity("p", vec![event(4)]).await.unwrap();
    storage.add_activity("r", vec![event(5)]).await.unwrap();
    storage.add_activity("q", Vec::new()).await.unwrap();
    let after = chrono::Utc::now().timestamp_millis();
    let read = |scope: &[&str], count: usize| {
        let storage = storage.clone();
        let scope = projects(scope);
        async move {
            storage
                .activity(scope, count)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.project, e.event["n"].as_i64().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let owned = |items: &[(&str, i64)]| -> Vec<(String, i64)> {
        items.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
    };
    assert_eq!(
        read(&["p", "q"], 10).await,
        owned(&[("p", 4), ("q", 3), ("p", 2), ("p", 1)])
    );
    assert_eq!(read(&["q", "p"], 2).await, owned(&[("p", 4), ("q", 3)]));
    assert_eq!(read(&["q"], 10).await, owned(&[("q", 3)]));
    assert_eq!(read(&["p", "q", "r"], 1).await, owned(&[("r", 5)]));
    assert_eq!(read(&["p"], 0).await, owned(&[]));
    assert_eq!(read(&["nope"], 10).await, owned(&[]));
    assert_eq!(read(&[], 10).await, owned(&[]));
    let events = storage.activity(projects(&["p"]), 1).await.unwrap();
    assert!(
        (before..=after).contains(&events[0].ts),
        "{} in {before}..={after}",
        events[0].ts
    );
    // The event object as written, keys in their order.
    assert_eq!(
        Value::Object(events[0].event.clone()).to_string(),
        r#"{"event":"e","n":4,"z":0,"a":1}"#
    );
}

async fn project_settings_start_with_botgroups_and_keep_their_key_order(storage: &Storage) {
    let text = |m: Map<String, Value>| Value::Object(m).to_string();
    assert_eq!(
        text(storage.project_settings("p").await.unwrap()),
        r#"{"botgroups":[]}"#
    );
    let written = object(json!({"z": 1, "a": {"y": 2, "b": [3, {"d": 4, "c": 5}]}, "m": null}));
    storage
        .set_project_settings("p", written.clone())
        .await
        .unwrap();
    assert_eq!(
        text(storage.project_settings("p").await.unwrap()),
        r#"{"z":1,"a":{"y":2,"b":[3,{"d":4,"c":5}]},"m":null}"#
    );
    storage.delete_project_setting("p", "a").await.unwrap();
    assert_eq!(
        text(storage.project_settings("p").await.unwrap()),
        r#"{"z":1,"m":null}"#
    );
    storage.delete_project_setting("p", "nope").await.unwrap();
    assert_eq!(
        text(storage.project_settings("p").await.unwrap()),
        r#"{"z":1,"m":null}"#
    );
    // Other projects are untouched; a fresh project's deleted key stays deleted.
    assert_eq!(
        text(storage.project_settings("q").await.unwrap()),
        r#"{"botgroups":[]}"#
    );
    storage
        .delete_project_setting("q", "botgroups")
        .await
        .unwrap();
    assert_eq!(text(storage.project_settings("q").await.unwrap()), "{}");
    // Replacing is whole.
    storage
        .set_project_settings("p", object(json!({"only": true})))
        .await
        .unwrap();
    assert_eq!(
        text(storage.project_settings("p").await.unwrap()),
        r#"{"only":true}"#
    );
    storage.set_project_settings("p", Map::new()).await.unwrap();
    assert_eq!(text(storage.project_settings("p").await.unwrap()), "{}");
}

// ---- Collections

async fn collections_are_listed_by_name_then_type_in_byte_order(storage: &Storage) {
    use CollectionType::*;
    assert_eq!(storage.collection_list("p").await.unwrap(), []);
    for (kind, name) in [
        (Store, "beta"),
        (VersionedStore, "alpha"),
        (VersionedCachedStore, "ébène"),
        (CachedStore, "alpha"),
        (Store, "Alpha"),
        (Store, "alpha"),
    ] {
        storage
            .collection_upsert(collection("p", kind, name), records(&[("k", json!({}))]), 1)
            .await
            .unwrap();
    }
    storage
        .collection_upsert(collection("q", Store, "other"), Vec::new(), 1)
        .await
        .unwrap();
    assert_eq!(
        storage.collection_list("p").await.unwrap(),
        list(&[
            ("s", "Alpha"),
            ("cs", "alpha"),
            ("s", "alpha"),
            ("vs", "alpha"),
            ("s", "beta"),
            ("vcs", "ébène"),
        ])
    );
    // An empty write creates the collection too.
    assert_eq!(
        storage.collection_list("q").await.unwrap(),
        list(&[("s", "other")])
    );
    let mut ids = Vec::new();
    for (kind, name) in [
        (CachedStore, "alpha"),
        (Store, "alpha"),
        (VersionedStore, "alpha"),
        (Store, "Alpha"),
    ] {
        ids.push(
            storage
                .collection_id(collection("p", kind, name))
                .await
                .unwrap()
                .expect("it exists"),
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each collection has an id of its own");
    assert_eq!(
        storage
            .collection_id(collection("p", VersionedCachedStore, "alpha"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .collection_id(collection("q", Store, "alpha"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(storage.collection_list("nope").await.unwrap(), []);
}

async fn collection_rename_and_drop_take_every_type_of_a_name(storage: &Storage) {
    use CollectionType::*;
    for (kind, name) in [
        (CachedStore, "alpha"),
        (VersionedStore, "alpha"),
        (Store, "beta"),
    ] {
        storage
            .collection_upsert(
                collection("p", kind, name),
                records(&[("k", json!({"of": name}))]),
                1,
            )
            .await
            .unwrap();
    }
    storage
        .collection_upsert(
            collection("q", Store, "alpha"),
            records(&[("k", json!({}))]),
            1,
        )
        .await
        .unwrap();
    let cs_alpha = storage
        .collection_id(collection("p", CachedStore, "alpha"))
        .await
        .unwrap();
    let before = storage.collection_list("p").await.unwrap();
    let rename = |from: &'static str, to: &'static str| storage.collection_rename("p", from, to);
    assert_eq!(
        rename("missing", "x").await.unwrap(),
        RenameOutcome::NotFound
    );
    assert_eq!(rename("alpha", "beta").await.unwrap(), RenameOutcome::Taken);
    assert_eq!(
        rename("alpha", "alpha").await.unwrap(),
        RenameOutcome::Renamed
    );
    assert_eq!(
        storage.collection_list("p").await.unwrap(),
        before,
        "nothing moved"
    );
    assert_eq!(
        rename("alpha", "gamma").await.unwrap(),
        RenameOutcome::Renamed
    );
    assert_eq!(
        storage.collection_list("p").await.unwrap(),
        list(&[("s", "beta"), ("cs", "gamma"), ("vs", "gamma")])
    );
    // Renamed with its id and records; other projects untouched.
    assert_eq!(
        storage
            .collection_id(collection("p", CachedStore, "gamma"))
            .await
            .unwrap(),
        cs_alpha
    );
    assert_eq!(
        storage
            .collection_get(collection("p", VersionedStore, "gamma"), "k".into(), 1)
            .await
            .unwrap(),
        Some(stored("k", 1, json!({"of": "alpha"})))
    );
    assert_eq!(
        storage.collection_list("q").await.unwrap(),
        list(&[("s", "alpha")])
    );
    assert_eq!(
        storage.collection_rename("q", "gamma", "x").await.unwrap(),
        RenameOutcome::NotFound
    );
    assert_eq!(storage.collection_drop("p", "gamma").await.unwrap(), 2);
    assert_eq!(storage.collection_drop("p", "gamma").await.unwrap(), 0);
    assert_eq!(storage.collection_drop("p", "nope").await.unwrap(), 0);
    assert_eq!(
        storage.collection_list("p").await.unwrap(),
        list(&[("s", "beta")])
    );
    assert_eq!(
        storage
            .collection_get(collection("p", VersionedStore, "gamma"), "k".into(), 1)
            .await
            .unwrap(),
        None
    );
    // Made again, it starts empty.
    storage
        .collection_upsert(collection("p", VersionedStore, "gamma"), Vec::new(), 2)
        .await
        .unwrap();
    assert_eq!(
        storage
            .collection_get(collection("p", VersionedStore, "gamma"), "k".into(), 2)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.collection_list("q").await.unwrap(),
        list(&[("s", "alpha")])
    );
}

async fn collection_records_are_written_read_and_deleted_by_key(storage: &Storage) {
    use CollectionType::*;
    let c = || collection("p", Store, "c");
    let get = |key: &str, now: i64| storage.collection_get(c(), key.to_owned(), now);
    // Reading or deleting in a collection that does not exist creates nothing.
    assert_eq!(get("k1", 1).await.unwrap(), None);
    assert_eq!(
        storage
            .collection_delete_keys(c(), strings(&["k1"]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(storage.collection_id(c()).await.unwrap(), None);
    assert_eq!(storage.collection_list("p").await.unwrap(), []);
    storage
        .collection_upsert(
            c(),
            records(&[("k1", json!({"v": 1})), ("k2", json!({"b": 2, "a": 1}))]),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        get("k1", 100).await.unwrap(),
        Some(stored("k1", 100, json!({"v": 1})))
    );
    // The value's text as written.
    assert_eq!(
        get("k2", 100).await.unwrap().map(|r| r.value),
        Some(r#"{"b":2,"a":1}"#.to_owned())
    );
    assert_eq!(get("K1", 100).await.unwrap(), None);
    // A write replaces a key's value and time; in one write, the last of a key wins.
    storage
        .collection_upsert(
            c(),
            records(&[
                ("k1", json!({"v": 3})),
                ("k3", json!({"v": "a"})),
                ("k3", json!({"v": "b"})),
            ]),
            200,
        )
        .await
        .unwrap();
    assert_eq!(
        get("k1", 200).await.unwrap(),
        Some(stored("k1", 200, json!({"v": 3})))
    );
    assert_eq!(get("k2", 200).await.unwrap().map(|r| r.ts), Some(100));
    assert_eq!(
        get("k3", 200).await.unwrap(),
        Some(stored("k3", 200, json!({"v": "b"})))
    );
    // The same key in another type or project is another record.
    assert_eq!(
        storage
            .collection_get(collection("p", VersionedStore, "c"), "k1".into(), 200)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .collection_get(collection("q", Store, "c"), "k1".into(), 200)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .collection_delete_keys(c(), strings(&["k1", "missing", "k1"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(get("k1", 200).await.unwrap(), None);
    assert_eq!(
        storage
            .collection_delete_keys(c(), Vec::new())
            .await
            .unwrap(),
        0
    );
    let id = storage.collection_id(c()).await.unwrap().unwrap();
    assert_eq!(all_records(storage, id).await, ["k2", "k3"]);
    // A versioned type answers its newest version.
    let v = || collection("p", VersionedStore, "v");
    for n in 1..=4 {
        storage
            .collection_upsert(v(), records(&[("k", json!({ "n": n }))]), n)
            .await
            .unwrap();
    }
    assert_eq!(
        storage.collection_get(v(), "k".into(), 4).await.unwrap(),
        Some(stored("k", 4, json!({"n": 4})))
    );
    let vid = storage.collection_id(v()).await.unwrap().unwrap();
    assert_eq!(all_records(storage, vid).await, ["k"]);
    assert_eq!(
        storage
            .collection_delete_keys(v(), strings(&["k"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage.collection_get(v(), "k".into(), 4).await.unwrap(),
        None
    );
}

async fn cached_collection_records_expire_and_are_purged_at_most_hourly(storage: &Storage) {
    use CollectionType::*;
    let (retention, interval) = (CACHE_RETENTION_MS, PURGE_INTERVAL_MS);
    let c = || collection("p", CachedStore, "c");
    let s = || collection("p", Store, "c");
    let write = |c: CollectionRef, key: &str, now: i64| {
        storage.collection_upsert(c, records(&[(key, json!({}))]), now)
    };
    write(c(), "old", 0).await.unwrap();
    write(s(), "old", 0).await.unwrap();
    let get = |c: CollectionRef, now: i64| storage.collection_get(c, "old".into(), now);
    // Visible for 30 days, then not; a plain store never expires.
    assert_eq!(
        get(c(), retention).await.unwrap(),
        Some(stored("old", 0, json!({})))
    );
    assert_eq!(get(c(), retention + 1).await.unwrap(), None);
    assert_eq!(
        get(s(), 10 * retention).await.unwrap(),
        Some(stored("old", 0, json!({})))
    );
    let id = storage.collection_id(c()).await.unwrap().unwrap();
    // A scan hides what it is told to (`min_ts`), the purge removes it.
    let visible = page(storage, id, None, None, (1, i64::MAX), 10).await;
    assert_eq!(visible, Vec::<String>::new());
    // Purged by a write an interval after the last purge (the collection's creation).
    write(c(), "mid", interval + 1).await.unwrap();
    assert_eq!(
        all_records(storage, id).await,
        ["mid", "old"],
        "nothing had expired"
    );
    // Records older than 30 days at the purge's time go: old (0), not mid (interval + 1).
    let t = retention + interval + 1;
    write(c(), "new", t).await.unwrap();
    assert_eq!(
        all_records(storage, id).await,
        ["mid", "new"],
        "old expired and was purged"
    );
    // At most once per interval: a record already expired waits for the next purge.
    write(c(), "back", 0).await.unwrap();
    write(c(), "again", t + interval - 1).await.unwrap();
    assert_eq!(
        all_records(storage, id).await,
        ["again", "back", "mid", "new"]
    );
    // The next purge takes back (0) and mid (interval + 1), now older than 30 days too.
    write(c(), "later", t + interval).await.unwrap();
    assert_eq!(all_records(storage, id).await, ["again", "later", "new"]);
    // The plain store of that name was never purged.
    let sid = storage.collection_id(s()).await.unwrap().unwrap();
    assert_eq!(all_records(storage, sid).await, ["old"]);
}

async fn collection_pages_are_key_ranges_or_exact_keys_in_byte_order(storage: &Storage) {
    let c = || collection("p", CollectionType::Store, "c");
    storage
        .collection_upsert(
            c(),
            records(&[
                ("a", json!({})),
                ("B", json!({})),
                ("b", json!({})),
                ("Z", json!({})),
            ]),
            10,
        )
        .await
        .unwrap();
    storage
        .collection_upsert(c(), records(&[("é", json!({})), ("a1", json!({}))]), 20)
        .await
        .unwrap();
    let id = storage.collection_id(c()).await.unwrap().unwrap();
    let all = (i64::MIN, i64::MAX);
    assert_eq!(
        page(storage, id, None, None, all, 100).await,
        ["B", "Z", "a", "a1", "b", "é"]
    );
    assert_eq!(
        page(storage, id, None, Some(("a", true)), all, 100).await,
        ["a", "a1", "b", "é"]
    );
    assert_eq!(
        page(storage, id, None, Some(("a", false)), all, 100).await,
        ["a1", "b", "é"]
    );
    assert_eq!(
        page(storage, id, None, Some(("a0", true)), all, 100).await,
        ["a1", "b", "é"]
    );
    assert_eq!(
        page(storage, id, None, Some(("é", false)), all, 100).await,
        Vec::<String>::new()
    );
    assert_eq!(
        page(storage, id, None, Some(("", true)), all, 1).await,
        ["B"]
    );
    // Paging: each page from after the last key of the one before.
    assert_eq!(page(storage, id, None, None, all, 2).await, ["B", "Z"]);
    assert_eq!(
        page(storage, id, None, Some(("Z", false)), all, 2).await,
        ["a", "a1"]
    );
    assert_eq!(
        page(storage, id, None, Some(("a1", false)), all, 2).await,
        ["b", "é"]
    );
    assert_eq!(
        page(storage, id, None, None, all, 0).await,
        Vec::<String>::new()
    );
    // Write times in [min_ts, max_ts).
    assert_eq!(
        page(storage, id, None, None, (20, i64::MAX), 100).await,
        ["a1", "é"]
    );
    assert_eq!(
        page(storage, id, None, None, (i64::MIN, 20), 100).await,
        ["B", "Z", "a", "b"]
    );
    assert_eq!(
        page(storage, id, None, Some(("a", false)), (10, 11), 100).await,
        ["b"]
    );
    // Exact keys: those that exist, in the order given, at most `limit` looked at.
    let keys = ["B", "missing", "é"];
    assert_eq!(
        page(storage, id, Some(&keys), None, all, 100).await,
        ["B", "é"]
    );
    assert_eq!(
        page(storage, id, Some(&keys), None, (20, i64::MAX), 100).await,
        ["é"]
    );
    assert_eq!(page(storage, id, Some(&keys), None, all, 2).await, ["B"]);
    assert_eq!(
        page(storage, id, Some(&[]), None, all, 100).await,
        Vec::<String>::new()
    );
    // Records carry their time and value.
    let records = storage
        .collection_page(PageRequest {
            collection: id,
            keys: None,
            from: Some(("a".into(), true)),
            min_ts: i64::MIN,
            max_ts: i64::MAX,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        records,
        [stored("a", 10, json!({})), stored("a1", 20, json!({}))]
    );
    // Another collection's id: nothing.
    storage
        .collection_upsert(collection("p", CollectionType::Store, "d"), Vec::new(), 1)
        .await
        .unwrap();
    let d = storage
        .collection_id(collection("p", CollectionType::Store, "d"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        page(storage, d, None, None, all, 100).await,
        Vec::<String>::new()
    );
}

// ---- Frontier

async fn frontier_add_counts_new_fingerprints_and_queues_their_requests_in_batches(
    storage: &Storage,
) {
    let s = || slot("p", "f", "s");
    // Reads of a slot that does not exist create nothing.
    assert_eq!(storage.frontier_slot_id(s()).await.unwrap(), None);
    assert_eq!(
        storage
            .frontier_delete_batches(s(), vec![(0, 1)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        storage.frontier_names("p").await.unwrap(),
        Vec::<String>::new()
    );
    let first = vec![
        NewRequest {
            fdata: Some(r#""fa""#.into()),
            ..request("/a", 0)
        },
        request("/b", 1),
        request("/a", 0),
        request("/c", 0),
    ];
    assert_eq!(storage.frontier_add(s(), first).await.unwrap(), 3);
    assert_eq!(
        storage
            .frontier_add(s(), vec![request("/a", 5), request("/d", 0)])
            .await
            .unwrap(),
        1,
        "only /d is new"
    );
    assert_eq!(
        storage
            .frontier_add(s(), vec![request("/b", 0)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(storage.frontier_add(s(), Vec::new()).await.unwrap(), 0);
    let id = slot_id(storage, s()).await;
    let batches = storage.frontier_batches(id, None, 10).await.unwrap();
    // By priority, then batch: a write's new requests, grouped by priority.
    assert_eq!(
        batches,
        [
            Batch {
                id: 1,
                priority: 0,
                requests: vec![
                    ("/a".into(), Some(r#"{"fp":"/a"}"#.into())),
                    ("/c".into(), Some(r#"{"fp":"/c"}"#.into())),
                ],
            },
            Batch {
                id: 3,
                priority: 0,
                requests: vec![("/d".into(), Some(r#"{"fp":"/d"}"#.into()))],
            },
            Batch {
                id: 2,
                priority: 1,
                requests: vec![("/b".into(), Some(r#"{"fp":"/b"}"#.into()))],
            },
        ]
    );
    // Batches of at most 100, never extended later.
    let many: Vec<NewRequest> = (0..150).map(|i| request(&format!("f{i:03}"), 2)).collect();
    assert_eq!(storage.frontier_add(s(), many).await.unwrap(), 150);
    let mut no_qdata = request("/e", 2);
    no_qdata.qdata = None;
    assert_eq!(storage.frontier_add(s(), vec![no_qdata]).await.unwrap(), 1);
    let batches = storage.frontier_batches(id, None, 10).await.unwrap();
    assert_eq!(
        heads(&batches),
        [
            (0, 1, 2),
            (0, 3, 1),
            (1, 2, 1),
            (2, 4, 100),
            (2, 5, 50),
            (2, 6, 1)
        ]
    );
    assert_eq!(batches[3].requests[0].0, "f000");
    assert_eq!(batches[3].requests[99].0, "f099");
    assert_eq!(batches[4].requests[0].0, "f100");
    assert_eq!(batches[5].requests, [("/e".to_owned(), None)]);
    // Other slots are other queues.
    let other = slot("p", "f", "t");
    assert_eq!(
        storage
            .frontier_add(other.clone(), vec![request("/a", 0)])
            .await
            .unwrap(),
        1
    );
    let other_id = slot_id(storage, other).await;
    assert_ne!(other_id, id);
    assert_eq!(
        heads(&storage.frontier_batches(other_id, None, 10).await.unwrap()),
        [(0, 1, 1)]
    );
}

async fn frontier_batches_page_in_queue_order_and_are_deleted_by_id(storage: &Storage) {
    let s = || slot("p", "f", "s");
    for (fp, priority) in [("/a", 3), ("/b", 1), ("/c", 2)] {
        storage
            .frontier_add(s(), vec![request(fp, priority)])
            .await
            .unwrap();
    }
    storage
        .frontier_add(s(), vec![request("/d", 1), request("/e", 3)])
        .await
        .unwrap();
    let id = slot_id(storage, s()).await;
    let read = |after: Option<(i64, i64)>, limit: usize| {
        let storage = storage.clone();
        async move { heads(&storage.frontier_batches(id, after, limit).await.unwrap()) }
    };
    assert_eq!(
        read(None, 10).await,
        [(1, 2, 1), (1, 4, 1), (2, 3, 1), (3, 1, 1), (3, 5, 1)]
    );
    assert_eq!(read(None, 2).await, [(1, 2, 1), (1, 4, 1)]);
    assert_eq!(read(Some((1, 4)), 2).await, [(2, 3, 1), (3, 1, 1)]);
    assert_eq!(read(Some((3, 1)), 2).await, [(3, 5, 1)]);
    assert_eq!(read(Some((3, 5)), 2).await, []);
    // `after` need not be a batch that exists.
    assert_eq!(
        read(Some((2, 0)), 10).await,
        [(2, 3, 1), (3, 1, 1), (3, 5, 1)]
    );
    assert_eq!(read(None, 0).await, []);
    let delete = |ids: Vec<(i64, i64)>| storage.frontier_delete_batches(s(), ids);
    assert_eq!(
        delete(vec![(1, 2), (3, 5), (2, 2), (9, 9)]).await.unwrap(),
        2
    );
    assert_eq!(delete(vec![(1, 2)]).await.unwrap(), 0);
    assert_eq!(delete(Vec::new()).await.unwrap(), 0);
    assert_eq!(read(None, 10).await, [(1, 4, 1), (2, 3, 1), (3, 1, 1)]);
    // A batch id of another slot deletes nothing there.
    assert_eq!(
        storage
            .frontier_delete_batches(slot("p", "f", "other"), vec![(1, 4)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        storage
            .frontier_slot_id(slot("p", "f", "other"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(read(None, 10).await, [(1, 4, 1), (2, 3, 1), (3, 1, 1)]);
    // Deleted requests keep their fingerprints: the same request is not queued again.
    assert_eq!(
        storage
            .frontier_add(s(), vec![request("/b", 1)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(read(None, 10).await, [(1, 4, 1), (2, 3, 1), (3, 1, 1)]);
}

async fn frontier_fingerprints_page_in_byte_order(storage: &Storage) {
    let s = || slot("p", "f", "s");
    let mut requests: Vec<NewRequest> = ["b", "B", "é", "a", "a1", "Z"]
        .iter()
        .map(|fp| request(fp, 0))
        .collect();
    requests[0].fdata = Some(r#"{"x":1}"#.into());
    storage.frontier_add(s(), requests).await.unwrap();
    let id = slot_id(storage, s()).await;
    let read = |from: Option<&str>, limit: usize| {
        let storage = storage.clone();
        let from = from.map(str::to_owned);
        async move {
            storage
                .frontier_fingerprints(id, from, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|(fp, _)| fp)
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(read(None, 10).await, ["B", "Z", "a", "a1", "b", "é"]);
    assert_eq!(read(None, 2).await, ["B", "Z"]);
    // After `from`, which need not exist.
    assert_eq!(read(Some("Z"), 2).await, ["a", "a1"]);
    assert_eq!(read(Some("a0"), 10).await, ["a1", "b", "é"]);
    assert_eq!(read(Some("é"), 10).await, Vec::<String>::new());
    assert_eq!(read(Some(""), 1).await, ["B"]);
    assert_eq!(read(None, 0).await, Vec::<String>::new());
    let with_data = storage
        .frontier_fingerprints(id, Some("a1".into()), 2)
        .await
        .unwrap();
    assert_eq!(
        with_data,
        [
            ("b".to_owned(), Some(r#"{"x":1}"#.to_owned())),
            ("é".to_owned(), None)
        ]
    );
    assert_eq!(
        storage
            .frontier_fingerprints(id + 1000, None, 10)
            .await
            .unwrap(),
        []
    );
}

async fn frontiers_and_slots_are_listed_in_byte_order_and_deleted_whole(storage: &Storage) {
    for (project, frontier, name) in [
        ("p", "alpha", "s2"),
        ("p", "Zeta", "only"),
        ("p", "alpha", "é"),
        ("p", "ébène", "x"),
        ("p", "alpha", "S1"),
        ("q", "other", "x"),
    ] {
        storage
            .frontier_add(slot(project, frontier, name), vec![request("/a", 0)])
            .await
            .unwrap();
    }
    assert_eq!(
        storage.frontier_names("p").await.unwrap(),
        ["Zeta", "alpha", "ébène"]
    );
    assert_eq!(storage.frontier_names("q").await.unwrap(), ["other"]);
    assert_eq!(
        storage.frontier_slots("p", "alpha").await.unwrap(),
        ["S1", "s2", "é"]
    );
    assert_eq!(
        storage.frontier_slots("p", "nope").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        storage.frontier_slots("q", "alpha").await.unwrap(),
        Vec::<String>::new()
    );
    let s2 = slot_id(storage, slot("p", "alpha", "s2")).await;
    let s1 = slot_id(storage, slot("p", "alpha", "S1")).await;
    assert_ne!(s1, s2);
    assert_eq!(
        storage
            .frontier_slot_id(slot("p", "alpha", "S2"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .frontier_slot_id(slot("q", "alpha", "s2"))
            .await
            .unwrap(),
        None
    );
    storage
        .frontier_add(slot("p", "alpha", "s2"), vec![request("/b", 1)])
        .await
        .unwrap();
    storage
        .frontier_delete_slot(slot("p", "alpha", "s2"))
        .await
        .unwrap();
    assert_eq!(
        storage
            .frontier_slot_id(slot("p", "alpha", "s2"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.frontier_slots("p", "alpha").await.unwrap(),
        ["S1", "é"]
    );
    assert_eq!(storage.frontier_batches(s2, None, 10).await.unwrap(), []);
    assert_eq!(
        storage.frontier_fingerprints(s2, None, 10).await.unwrap(),
        []
    );
    // The other slots keep theirs.
    assert_eq!(
        heads(&storage.frontier_batches(s1, None, 10).await.unwrap()),
        [(0, 1, 1)]
    );
    // Deleting a slot that does not exist changes nothing.
    storage
        .frontier_delete_slot(slot("p", "alpha", "s2"))
        .await
        .unwrap();
    storage
        .frontier_delete_slot(slot("p", "nope", "x"))
        .await
        .unwrap();
    storage
        .frontier_delete_slot(slot("p", "other", "x"))
        .await
        .unwrap();
    assert_eq!(storage.frontier_names("q").await.unwrap(), ["other"]);
    // A frontier whose last slot went is no longer listed.
    storage
        .frontier_delete_slot(slot("p", "Zeta", "only"))
        .await
        .unwrap();
    assert_eq!(
        storage.frontier_names("p").await.unwrap(),
        ["alpha", "ébène"]
    );
    // Made again, a slot starts empty: every fingerprint is new, batches count from 1.
    assert_eq!(
        storage
            .frontier_add(
                slot("p", "alpha", "s2"),
                vec![request("/a", 0), request("/b", 1)]
            )
            .await
            .unwrap(),
        2
    );
    let again = slot_id(storage, slot("p", "alpha", "s2")).await;
    assert_eq!(
        heads(&storage.frontier_batches(again, None, 10).await.unwrap()),
        [(0, 1, 1), (1, 2, 1)]
    );
}

async fn nul_and_control_characters_in_keys_and_fingerprints_are_kept_in_byte_order(
    storage: &Storage,
) {
    // Keys and fingerprints are any non-empty JSON string, NUL included (`"\u0000"`).
    let c = || collection("p", CollectionType::Store, "c");
    let keys = [
        "a\u{2}",
        "a",
        "a\u{0}b",
        "\u{0}",
        "a\u{1}",
        "a\u{0}",
        "\u{1}\u{1}",
    ];
    let written: Vec<(&str, Value)> = keys.iter().map(|k| (*k, json!({ "k": k }))).collect();
    storage
        .collection_upsert(c(), records(&written), 5)
        .await
        .unwrap();
    let id = storage.collection_id(c()).await.unwrap().unwrap();
    let all = (i64::MIN, i64::MAX);
    let in_order = [
        "\u{0}",
        "\u{1}\u{1}",
        "a",
        "a\u{0}",
        "a\u{0}b",
        "a\u{1}",
        "a\u{2}",
    ];
    assert_eq!(page(storage, id, None, None, all, 100).await, in_order);
    assert_eq!(
        page(storage, id, None, Some(("a\u{0}", false)), all, 100).await,
        ["a\u{0}b", "a\u{1}", "a\u{2}"]
    );
    assert_eq!(
        page(storage, id, None, Some(("\u{0}\u{0}", true)), all, 2).await,
        ["\u{1}\u{1}", "a"]
    );
    assert_eq!(
        page(
            storage,
            id,
            Some(&["a\u{0}", "a\u{0}\u{0}"]),
            None,
            all,
            100
        )
        .await,
        ["a\u{0}"]
    );
    assert_eq!(
        storage
            .collection_get(c(), "a\u{0}b".into(), 5)
            .await
            .unwrap(),
        Some(stored("a\u{0}b", 5, json!({"k": "a\u{0}b"})))
    );
    assert_eq!(
        storage
            .collection_get(c(), "a\u{0}c".into(), 5)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .collection_delete_keys(c(), strings(&["a\u{0}", "\u{1}"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        page(storage, id, None, None, all, 100).await,
        ["\u{0}", "\u{1}\u{1}", "a", "a\u{0}b", "a\u{1}", "a\u{2}"]
    );
    // Fingerprints, and frontier and slot names.
    let s = || slot("p", "f\u{0}", "s\u{1}");
    let requests = vec![request("x\u{1}y", 0), request("x", 0), request("x\u{0}", 0)];
    assert_eq!(storage.frontier_add(s(), requests).await.unwrap(), 3);
    assert_eq!(
        storage
            .frontier_add(s(), vec![request("x\u{0}", 0)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(storage.frontier_names("p").await.unwrap(), ["f\u{0}"]);
    assert_eq!(
        storage.frontier_slots("p", "f\u{0}").await.unwrap(),
        ["s\u{1}"]
    );
    assert_eq!(
        storage.frontier_slots("p", "f").await.unwrap(),
        Vec::<String>::new()
    );
    let slot_id = slot_id(storage, s()).await;
    let fps: Vec<String> = storage
        .frontier_fingerprints(slot_id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(fp, _)| fp)
        .collect();
    assert_eq!(fps, ["x", "x\u{0}", "x\u{1}y"]);
    let after: Vec<String> = storage
        .frontier_fingerprints(slot_id, Some("x\u{0}".into()), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(fp, _)| fp)
        .collect();
    assert_eq!(after, ["x\u{1}y"]);
    let batches = storage.frontier_batches(slot_id, None, 10).await.unwrap();
    let queued: Vec<&str> = batches[0]
        .requests
        .iter()
        .map(|(fp, _)| fp.as_str())
        .collect();
    assert_eq!(queued, ["x\u{1}y", "x", "x\u{0}"]);
    storage.frontier_delete_slot(s()).await.unwrap();
    assert_eq!(
        storage.frontier_names("p").await.unwrap(),
        Vec::<String>::new()
    );
}

// ---- Nodes

async fn a_registered_node_beats_and_its_live_name_is_refused_to_a_twin(storage: &Storage) {
    let timeout = Duration::from_secs(60);
    assert!(storage.heartbeat().await.unwrap());
    let twin = storage
        .register_node(node_info("node-1"), timeout, None)
        .await
        .unwrap();
    if storage.is_shared() {
        // The name beat within the timeout: another process may hold it.
        let Registration::Alive(beat) = twin else {
            panic!("a live name is refused: {twin:?}");
        };
        assert!(storage.heartbeat().await.unwrap(), "the holder keeps it");
        // Unless the caller saw that beat and it has not moved since: taken over.
        let stale = storage
            .register_node(node_info("node-1"), timeout, Some(beat))
            .await
            .unwrap();
        assert!(
            matches!(stale, Registration::Alive(now) if now > beat),
            "the beat moved since: {stale:?}"
        );
        let Registration::Alive(last) = storage
            .register_node(node_info("node-1"), timeout, None)
            .await
            .unwrap()
        else {
            panic!("still alive");
        };
        let mut moved = node_info("node-1");
        moved.max_proc = 9;
        assert_eq!(
            storage
                .register_node(moved, timeout, Some(last))
                .await
                .unwrap(),
            Registration::Registered(2)
        );
    } else {
        assert_eq!(
            twin,
            Registration::Registered(1),
            "one node, always registered"
        );
    }
    assert!(storage.heartbeat().await.unwrap());
    admit(storage, job("p", "j", 0.0, 1)).await;
    assert_eq!(claimed(storage, &["p"]).await.as_deref(), Some("j"));
    let nodes = storage.nodes(timeout).await.unwrap();
    if storage.is_shared() {
        let nodes = nodes.expect("the cluster's nodes");
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!(
            (
                n.name.as_str(),
                n.url.as_str(),
                n.alive,
                n.running,
                n.max_proc
            ),
            ("node-1", "http://127.0.0.1:6800", true, 1, 9)
        );
        assert!(!n.started.is_empty() && !n.heartbeat.is_empty());
    } else {
        assert_eq!(nodes, None, "SQLite: this node is the only one");
    }
    // Alive: swept by nobody, its job runs on.
    assert_eq!(storage.sweep_dead_nodes(timeout, 10).await.unwrap(), []);
    let (_, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!((counts.running, counts.finished), (1, 0));
    storage.refresh_versions().await.unwrap();
    let (generation, _) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!(storage.generation(), generation);
    assert_eq!(storage.finished_version(), 0);
}

async fn a_node_silent_past_the_timeout_is_swept_and_its_running_jobs_are_lost(storage: &Storage) {
    admit(storage, job("p", "running", 0.0, 1)).await;
    admit(storage, job("p", "waiting", 0.0, 2)).await;
    assert_eq!(claimed(storage, &["p"]).await.as_deref(), Some("running"));
    // A timeout of zero: every beat is too old.
    let lost = storage.sweep_dead_nodes(Duration::ZERO, 10).await.unwrap();
    let status = storage
        .job_status(Some("p".into()), "running".into(), projects(&["p"]))
        .await
        .unwrap();
    if !storage.is_shared() {
        // One node, never dead to itself.
        assert_eq!(lost, []);
        assert_eq!(status.0, Some(JobState::Running));
        assert!(storage.heartbeat().await.unwrap());
        return;
    }
    let lost: Vec<(&str, &str, &str)> = lost
        .iter()
        .map(|l| (l.node.as_str(), l.project.as_str(), l.job.as_str()))
        .collect();
    assert_eq!(lost, [("node-1", "p", "running")]);
    let (state, record) = status;
    assert_eq!(state, Some(JobState::Finished));
    let record = record.expect("its finished record");
    assert_eq!(record.outcome.as_deref(), Some("lost"));
    assert_eq!(
        record.reason.as_deref(),
        Some("node node-1 stopped answering")
    );
    assert_eq!(storage.finished_version(), 1);
    // Never run again; the dead node claims nothing and must register again.
    assert!(!storage.heartbeat().await.unwrap());
    assert!(storage.claim_next(projects(&["p"]), 3).await.is_err());
    let (_, counts) = storage.counts(projects(&["p"])).await.unwrap();
    assert_eq!((counts.pending, counts.running, counts.finished), (1, 0, 1));
    assert_eq!(
        storage.sweep_dead_nodes(Duration::ZERO, 10).await.unwrap(),
        []
    );
    let nodes = storage
        .nodes(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the cluster's nodes");
    assert_eq!((nodes[0].alive, nodes[0].running), (false, 0));
    let timeout = Duration::from_secs(60);
    let Registration::Alive(beat) = storage
        .register_node(node_info("node-1"), timeout, None)
        .await
        .unwrap()
    else {
        panic!("its last beat is recent");
    };
    let again = storage
        .register_node(node_info("node-1"), timeout, Some(beat))
        .await
        .unwrap();
    assert!(matches!(again, Registration::Registered(_)), "{again:?}");
    assert!(storage.heartbeat().await.unwrap());
    assert_eq!(claimed(storage, &["p"]).await.as_deref(), Some("waiting"));
}
