//! The storage conformance suite: each case runs a storage method's contract through the
//! public `Storage` handle, once per backend (`backends!` makes a test per case and backend).
//! Both backends run every case (PostgreSQL on the test support's real server, a database per
//! test), so both are held to the same answers.

use scrapyd_rs::config::DbsDir;
use scrapyd_rs::storage::Storage;
use scrapyd_rs::storage::model::{
    Admission, Ending, JobKey, JobState, NewJob, Orphan, Outcome, PendingJob, Retention, Uniqueness,
};
use serde_json::Map;

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
    Backend { storage, _dir: None }
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
