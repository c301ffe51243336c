//! End to end with real parts: the real server, a real egg of `tests/project` deployed with the
//! real `scrapyd-deploy`, real `scrapy crawl` processes against a local site, real logs and items.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::server::{Backend, TestServer};

const LONG: Duration = Duration::from_secs(90);

// The core paths (schedule, crawl, cancel, restart) on both storage backends.
on_both_backends!(priority_order_and_cancel, pending_jobs_survive_a_restart);

fn egg() -> Vec<u8> {
    support::build_egg(&support::test_project_dir())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_scrapyd_deploy_then_crawl_a_site() {
    let s = TestServer::start(|_| {}).await;
    let site = support::Site::start();
    // The real scrapyd-deploy builds the egg and uploads it.
    let project = support::deployable_project_copy(&format!("{}/", s.url));
    let out = support::run_checked(
        support::venv()
            .command("scrapyd-deploy")
            .args(["-v", "1.0"])
            .current_dir(project.path()),
        "scrapyd-deploy",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"status\": \"ok\""),
        "scrapyd-deploy said: {stdout}"
    );
    assert_eq!(
        s.get("listprojects.json", &[]).await["projects"],
        serde_json::json!(["testproject"])
    );
    assert_eq!(
        s.get("listversions.json", &[("project", "testproject")])
            .await["versions"],
        serde_json::json!(["1.0"])
    );
    assert_eq!(
        s.get("listspiders.json", &[("project", "testproject")])
            .await["spiders"],
        serde_json::json!(["echo", "fail", "site", "slow"])
    );

    let job = s
        .schedule(&[
            ("project", "testproject"),
            ("spider", "site"),
            ("url", &site.url()),
        ])
        .await;
    assert!(
        job.len() == 32
            && job
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{job}"
    );
    s.wait_state(&job, "finished", LONG).await;
    let entry = s.finished_entry(&job).await.expect("finished entry");
    assert_eq!(entry["spider"], "site");
    assert!(entry["start_time"].as_str().unwrap() <= entry["end_time"].as_str().unwrap());
    let log_url = entry["log_url"].as_str().expect("log_url");
    assert_eq!(log_url, format!("/logs/testproject/site/{job}.log"));
    let log = s.get_raw(&log_url[1..], &[]).await.text().await.unwrap();
    assert!(log.contains("Spider closed (finished)"), "{log}");
    let items_url = entry["items_url"].as_str().expect("items_url");
    let items = s.get_raw(&items_url[1..], &[]).await.text().await.unwrap();
    let titles: Vec<String> = items
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(titles.len() >= 3, "items: {items}");
    assert!(site.requested_paths().iter().any(|p| p == "/page/2"));
    // The pages show it.
    let jobs_page = s.get_raw("jobs", &[]).await.text().await.unwrap();
    assert!(jobs_page.contains(&job));
    assert!(
        jobs_page.contains("<th>Outcome</th>") && jobs_page.contains("<td>finished</td>"),
        "{jobs_page}"
    );
    // The listing is cached between store writes, but its file links follow the files: a log
    // removed (and an items file restored) by hand shows at once, with no job change between.
    let log_path = s
        .config
        .logs_dir
        .clone()
        .unwrap()
        .join(format!("testproject/site/{job}.log"));
    let log_bytes = std::fs::read(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    let entry = s.finished_entry(&job).await.unwrap();
    assert_eq!(entry["log_url"], Value::Null);
    assert_eq!(entry["items_url"], items_url);
    std::fs::write(&log_path, log_bytes).unwrap();
    let entry = s.finished_entry(&job).await.unwrap();
    assert_eq!(entry["log_url"], log_url);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_settings_and_environment_reach_the_spider() {
    let s =
        TestServer::start(|c| c.jobs_dir = Some(c.eggs_dir.parent().unwrap().join("jobs"))).await;
    assert_eq!(s.add_version("echoes", "r1", &egg()).await["spiders"], 4);
    let job = s
        .schedule(&[
            ("project", "echoes"),
            ("spider", "echo"),
            ("jobid", "my-job.1"),
            ("setting", "DOWNLOAD_DELAY=0.25"),
            ("setting", "TRACK=Cause = Time"),
            ("settings_to_echo", "DOWNLOAD_DELAY,TRACK"),
            ("arg1", "val1"),
            ("unicode", "ñ"),
        ])
        .await;
    assert_eq!(job, "my-job.1");
    s.wait_state(&job, "finished", LONG).await;
    let items = support::read_jsonlines(&s.root().join("items/echoes/echo/my-job.1.jl"));
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["args"]["_job"], "my-job.1");
    assert_eq!(item["args"]["arg1"], "val1");
    assert_eq!(item["args"]["unicode"], "ñ");
    assert!(item["args"].get("_version").is_none());
    assert_eq!(item["settings"]["DOWNLOAD_DELAY"], "0.25");
    assert_eq!(item["settings"]["TRACK"], "Cause = Time");
    let log_file = s.root().join("logs/echoes/echo/my-job.1.log");
    assert_eq!(item["settings"]["LOG_FILE"], log_file.display().to_string());
    let jobdir = s.root().join("jobs/echoes/echo/my-job.1");
    assert_eq!(item["settings"]["JOBDIR"], jobdir.display().to_string());
    let feed = format!(
        "file://{}",
        s.root().join("items/echoes/echo/my-job.1.jl").display()
    );
    assert!(
        item["settings"]["FEEDS"].to_string().contains(&feed),
        "{}",
        item["settings"]["FEEDS"]
    );
    assert_eq!(item["env"]["SCRAPY_PROJECT"], "echoes");
    assert_eq!(item["env"]["SCRAPYD_EGG_VERSION"], "r1");
    assert_eq!(
        item["env"]["SCRAPY_SETTINGS_MODULE"],
        "testproject.settings"
    );
    let project_file = item["project_file"].as_str().unwrap();
    assert!(
        project_file.contains("/eggs/echoes/r1.egg/"),
        "code comes from the stored egg: {project_file}"
    );
    assert!(log_file.is_file());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_order_and_pinning() {
    let s = TestServer::start(|_| {}).await;
    for v in ["1.10", "1.9", "1.0"] {
        assert_eq!(s.add_version("pinned", v, &egg()).await["status"], "ok");
    }
    assert_eq!(
        s.get("listversions.json", &[("project", "pinned")]).await["versions"],
        serde_json::json!(["1.0", "1.9", "1.10"])
    );
    // Latest is 1.10 (PEP 440), and _version pins another one.
    for (version, expected) in [(None, "1.10"), (Some("1.9"), "1.9")] {
        let mut form = vec![("project", "pinned"), ("spider", "echo")];
        if let Some(v) = version {
            form.push(("_version", v));
        }
        let job = s.schedule(&form).await;
        s.wait_state(&job, "finished", LONG).await;
        let items = support::read_jsonlines(&s.root().join(format!("items/pinned/echo/{job}.jl")));
        assert_eq!(items[0]["env"]["SCRAPYD_EGG_VERSION"], expected);
        assert_eq!(
            items[0]["args"].get("_version").and_then(Value::as_str),
            version
        );
    }
    assert_eq!(
        s.post(
            "schedule.json",
            &[("project", "pinned"), ("spider", "echo"), ("_version", "7")]
        )
        .await["message"],
        "version '7' not found"
    );
    assert_eq!(
        s.get(
            "listspiders.json",
            &[("project", "pinned"), ("_version", "7")]
        )
        .await["message"],
        "version '7' not found"
    );
    assert_eq!(
        s.post(
            "schedule.json",
            &[("project", "pinned"), ("spider", "nope")]
        )
        .await["message"],
        "spider 'nope' not found"
    );
    // Deleting versions: the project goes with its last one.
    for v in ["1.0", "1.9"] {
        assert_eq!(
            s.post("delversion.json", &[("project", "pinned"), ("version", v)])
                .await["status"],
            "ok"
        );
    }
    assert_eq!(
        s.get("listversions.json", &[("project", "pinned")]).await["versions"],
        serde_json::json!(["1.10"])
    );
    assert_eq!(
        s.post(
            "delversion.json",
            &[("project", "pinned"), ("version", "1.10")]
        )
        .await["status"],
        "ok"
    );
    assert_eq!(
        s.get("listprojects.json", &[]).await["projects"],
        serde_json::json!([])
    );
    assert_eq!(
        s.get("listspiders.json", &[("project", "pinned")]).await["message"],
        "project 'pinned' not found"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_eggs_are_refused_with_the_runner_error_and_nothing_stored() {
    let s = TestServer::start(|_| {}).await;
    let cases = [
        ("settings_raise", "This should break the"),
        ("no_entrypoint", "BadEggError"),
        (
            "import_error",
            "No module named 'importerror_nonexistent_module'",
        ),
    ];
    for (name, expected) in cases {
        let egg = support::build_egg(&support::broken_project_dir(name));
        let v = s.add_version(name, "1", &egg).await;
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("RunnerError: ") && message.contains(expected),
            "{name}: {v}"
        );
        assert!(
            !s.root().join("eggs").join(name).exists(),
            "{name} left files behind"
        );
    }
    assert_eq!(
        s.get("listprojects.json", &[]).await["projects"],
        serde_json::json!([])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_job_ids_are_refused_at_schedule_and_hold_no_slot() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
    s.add_version("ids", "1", &egg()).await;
    for bad in ["../evil", "a/b", ".", ""] {
        let v = s
            .post(
                "schedule.json",
                &[("project", "ids"), ("spider", "echo"), ("jobid", bad)],
            )
            .await;
        assert_eq!(v["message"], format!("DirectoryTraversalError: {bad}"));
    }
    for reserved in ["_job", "settings", "name"] {
        let v = s
            .post(
                "schedule.json",
                &[("project", "ids"), ("spider", "echo"), (reserved, "x")],
            )
            .await;
        assert!(v["message"].as_str().unwrap().contains("reserved"), "{v}");
    }
    assert_eq!(s.get("daemonstatus.json", &[]).await["pending"], 0);
    // The one slot still works.
    let job = s.schedule(&[("project", "ids"), ("spider", "echo")]).await;
    s.wait_state(&job, "finished", LONG).await;
    s.stop().await;
}

/// One slot: a slow crawl holds it while others wait in priority order; cancel pending, cancel
/// running (graceful), and a second cancel that forces the stop.
async fn priority_order_and_cancel(backend: Backend) {
    let store = backend.store();
    let s = TestServer::start(|c| {
        store.apply(c);
        c.max_proc = 1;
    })
    .await;
    let site = support::Site::start();
    s.add_version("q", "1", &egg()).await;
    let first = s
        .schedule(&[("project", "q"), ("spider", "slow"), ("jobid", "first")])
        .await;
    s.wait_state(&first, "running", LONG).await;
    let low = s
        .schedule(&[
            ("project", "q"),
            ("spider", "echo"),
            ("jobid", "low"),
            ("priority", "-1"),
        ])
        .await;
    let a = s
        .schedule(&[
            ("project", "q"),
            ("spider", "echo"),
            ("jobid", "a"),
            ("setting", "X=1"),
            ("k", "v"),
        ])
        .await;
    let high = s
        .schedule(&[
            ("project", "q"),
            ("spider", "site"),
            ("jobid", "high"),
            ("priority", "2.5"),
            ("url", &site.url_of(support::HANG_PATH)),
            // Longer than any test: the request hangs until the cancels, however slow the
            // machine (the project's 10 s would end it by itself).
            ("setting", "DOWNLOAD_TIMEOUT=600"),
        ])
        .await;
    let b = s
        .schedule(&[
            ("project", "q"),
            ("spider", "echo"),
            ("jobid", "b"),
            ("_version", "1"),
        ])
        .await;
    let jobs = s.get("listjobs.json", &[("project", "q")]).await;
    let order: Vec<&str> = jobs["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [high.as_str(), a.as_str(), b.as_str(), low.as_str()]);
    assert_eq!(
        jobs["pending"][1],
        serde_json::json!({"id": "a", "project": "q", "spider": "echo", "version": null, "settings": {"X": "1"}, "args": {"k": "v"}})
    );
    assert_eq!(jobs["pending"][2]["version"], "1");
    let running = &jobs["running"][0];
    assert_eq!(running["id"], "first");
    assert!(running["pid"].as_u64().unwrap() > 0);
    // The log URL appears once Scrapy has created the file.
    support::wait_until_async("log_url of the running job", LONG, || async {
        let v = s.get("listjobs.json", &[]).await;
        (v["running"][0]["log_url"] == "/logs/q/slow/first.log").then_some(())
    })
    .await;
    assert_eq!(s.get("daemonstatus.json", &[]).await["pending"], 4);

    // Cancel a pending job: it leaves the queue.
    let v = s
        .post("cancel.json", &[("project", "q"), ("job", &a)])
        .await;
    assert_eq!(v["prevstate"], "pending");
    assert_eq!(s.state(&a).await, Value::Null);
    // Unknown job: null, no error.
    assert_eq!(
        s.post("cancel.json", &[("project", "q"), ("job", "nope")])
            .await["prevstate"],
        Value::Null
    );
    assert_eq!(
        s.post(
            "cancel.json",
            &[("project", "q"), ("job", "x"), ("signal", "FOO")]
        )
        .await["message"],
        "signal is invalid: unknown signal 'FOO'"
    );

    // Cancel the running slow crawl: SIGINT, Scrapy closes cleanly; the highest priority starts.
    // (Once it has crawled, a SIGINT is a clean stop with a finish reason.)
    let first_log = s.root().join("logs/q/slow/first.log");
    support::wait_until_async("the slow spider's first tick", LONG, || async {
        std::fs::read_to_string(&first_log)
            .ok()?
            .contains("slow spider: first tick")
            .then_some(())
    })
    .await;
    let v = s
        .post("cancel.json", &[("project", "q"), ("job", &first)])
        .await;
    assert_eq!(v["prevstate"], "running");
    s.wait_state(&first, "finished", LONG).await;
    let log = std::fs::read_to_string(s.root().join("logs/q/slow/first.log")).unwrap();
    assert!(log.contains("shutting down gracefully"), "{log}");
    let entry = s.finished_entry(&first).await.unwrap();
    assert_eq!(
        (entry["outcome"].as_str(), entry["exit_code"].as_i64()),
        (Some("cancelled"), Some(0))
    );
    assert_eq!(entry["finish_reason"], "shutdown");
    s.wait_state(&high, "running", LONG).await;
    // `high` hangs on a request that never answers: the first cancel starts a graceful stop
    // that waits for it; the second forces the stop.
    support::wait_until_async("the hanging request", LONG, || async {
        site.requested_paths()
            .iter()
            .any(|p| p == support::HANG_PATH)
            .then_some(())
    })
    .await;
    assert_eq!(
        s.post("cancel.json", &[("project", "q"), ("job", &high)])
            .await["prevstate"],
        "running"
    );
    assert_eq!(s.state(&high).await, "running");
    assert_eq!(
        s.post("cancel.json", &[("project", "q"), ("job", &high)])
            .await["prevstate"],
        "running"
    );
    s.wait_state(&high, "finished", LONG).await;
    // The rest run in order.
    s.wait_state(&low, "finished", LONG).await;
    let finished = s.get("listjobs.json", &[]).await["finished"].clone();
    let order: Vec<&str> = finished
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["low", "b", "high", "first"], "newest first");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_signal_and_failed_crawls_free_their_slot() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
    s.add_version("k", "1", &egg()).await;
    let slow = s.schedule(&[("project", "k"), ("spider", "slow")]).await;
    s.wait_state(&slow, "running", LONG).await;
    let v = s
        .post(
            "cancel.json",
            &[("project", "k"), ("job", &slow), ("signal", "9")],
        )
        .await;
    assert_eq!(v["prevstate"], "running");
    s.wait_state(&slow, "finished", LONG).await;
    let failing = s
        .schedule(&[("project", "k"), ("spider", "fail"), ("exit", "1")])
        .await;
    s.wait_state(&failing, "finished", LONG).await;
    let raising = s.schedule(&[("project", "k"), ("spider", "fail")]).await;
    s.wait_state(&raising, "finished", LONG).await;
    let log = std::fs::read_to_string(s.root().join(format!("logs/k/fail/{raising}.log"))).unwrap();
    assert!(log.contains("failing on purpose in the callback"));
    let after = s.schedule(&[("project", "k"), ("spider", "echo")]).await;
    s.wait_state(&after, "finished", LONG).await;
    assert_eq!(s.get("daemonstatus.json", &[]).await["running"], 0);
    // How each ended, in listjobs and status.json (keys Scrapyd does not have).
    let ending = |e: Value| {
        (
            e["outcome"].clone(),
            e["exit_code"].clone(),
            e["signal"].clone(),
            e["finish_reason"].clone(),
        )
    };
    use serde_json::json;
    assert_eq!(
        ending(s.finished_entry(&slow).await.unwrap()),
        (json!("cancelled"), json!(null), json!(9), json!(null))
    );
    assert_eq!(
        ending(s.finished_entry(&failing).await.unwrap()),
        (json!("failed"), json!(1), json!(null), json!(null))
    );
    assert_eq!(
        ending(s.finished_entry(&raising).await.unwrap()),
        (json!("finished"), json!(0), json!(null), json!("finished"))
    );
    let status = s
        .get("status.json", &[("job", &after), ("project", "k")])
        .await;
    assert_eq!(
        ending(status.clone()),
        (json!("finished"), json!(0), json!(null), json!("finished")),
        "{status}"
    );
    assert_eq!(status["currstate"], "finished");
    s.stop().await;
}

/// A cancelled crawl that does not stop within `cancel_timeout` is killed with its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_is_not_obeyed_is_forced_after_cancel_timeout() {
    let s = TestServer::start(|c| c.cancel_timeout = Duration::from_secs(1)).await;
    let site = support::Site::start();
    s.add_version("ct", "1", &egg()).await;
    let job = s
        .schedule(&[
            ("project", "ct"),
            ("spider", "site"),
            ("url", &site.url_of(support::HANG_PATH)),
            ("setting", "DOWNLOAD_TIMEOUT=600"),
        ])
        .await;
    support::wait_until_async("the hanging request", LONG, || async {
        site.requested_paths()
            .iter()
            .any(|p| p == support::HANG_PATH)
            .then_some(())
    })
    .await;
    assert_eq!(
        s.post("cancel.json", &[("project", "ct"), ("job", &job)])
            .await["prevstate"],
        "running"
    );
    s.wait_state(&job, "finished", LONG).await;
    let entry = s.finished_entry(&job).await.unwrap();
    assert_eq!(entry["outcome"], "cancelled");
    assert_eq!(entry["signal"], 9, "{entry}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_failures_are_recorded_and_free_the_slot() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
    s.add_version("lf", "1", &egg()).await;
    s.add_version("lf", "2", &egg()).await;
    let slow = s.schedule(&[("project", "lf"), ("spider", "slow")]).await;
    s.wait_state(&slow, "running", LONG).await;
    // Pinned to a version that is deleted before the job can start.
    let pinned = s
        .schedule(&[("project", "lf"), ("spider", "echo"), ("_version", "1")])
        .await;
    assert_eq!(
        s.post("delversion.json", &[("project", "lf"), ("version", "1")])
            .await["status"],
        "ok"
    );
    // A log folder that cannot be created.
    std::fs::create_dir_all(s.root().join("logs/lf")).unwrap();
    std::fs::write(
        s.root().join("logs/lf/fail"),
        "a file where a folder should be",
    )
    .unwrap();
    let unwritable = s.schedule(&[("project", "lf"), ("spider", "fail")]).await;
    let fine = s.schedule(&[("project", "lf"), ("spider", "echo")]).await;
    s.post("cancel.json", &[("project", "lf"), ("job", &slow)])
        .await;
    for job in [&pinned, &unwritable, &fine] {
        s.wait_state(job, "finished", LONG).await;
    }
    for job in [&pinned, &unwritable] {
        assert_eq!(
            s.finished_entry(job).await.unwrap()["outcome"],
            "launch-failed"
        );
    }
    let items = support::read_jsonlines(&s.root().join(format!("items/lf/echo/{fine}.jl")));
    assert_eq!(items.len(), 1, "the job after the failures ran");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_project_removes_its_pending_jobs() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
    s.add_version("gone", "1", &egg()).await;
    s.add_version("other", "1", &egg()).await;
    let slow = s
        .schedule(&[("project", "other"), ("spider", "slow")])
        .await;
    s.wait_state(&slow, "running", LONG).await;
    let pending = s.schedule(&[("project", "gone"), ("spider", "echo")]).await;
    assert_eq!(s.state(&pending).await, "pending");
    assert_eq!(
        s.post("delproject.json", &[("project", "gone")]).await["status"],
        "ok"
    );
    assert_eq!(s.get("daemonstatus.json", &[]).await["pending"], 0);
    // A new project of the same name starts clean.
    s.add_version("gone", "1", &egg()).await;
    assert_eq!(
        s.get("listjobs.json", &[("project", "gone")]).await["pending"],
        serde_json::json!([])
    );
    s.stop().await;
}

/// A stop asked for while the daemon starts (a SIGTERM during start-up) starts no crawl: the
/// pending job stays in its queue, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_start_up_starts_no_crawl() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), |_| {}).await;
    s.add_version("st", "1", &egg()).await;
    s.stop().await;
    let storage =
        scrapyd_rs::storage::Storage::open(scrapyd_rs::config::DbsDir::Dir(dir.path().join("dbs")))
            .unwrap();
    let waiting = scrapyd_rs::storage::model::PendingJob::new("st", "echo", "waiting");
    storage.enqueue(waiting.into()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = support::server::test_config(dir.path());
    scrapyd_rs::serve(config, listener, std::future::ready(()))
        .await
        .unwrap();
    let snapshot = storage
        .snapshot(vec!["st".to_string()], None)
        .await
        .unwrap();
    let (pending, running, finished) =
        (snapshot.pending, snapshot.running, snapshot.finished.len());
    let pending: Vec<&str> = pending.iter().map(|p| p.job.as_str()).collect();
    assert_eq!(pending, ["waiting"]);
    assert!(running.is_empty(), "{running:?}");
    assert_eq!(finished, 0);
}

async fn pending_jobs_survive_a_restart(backend: Backend) {
    let store = backend.store();
    let config = |c: &mut scrapyd_rs::config::Config| {
        store.apply(c);
        c.max_proc = 1;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), config).await;
    s.add_version("r", "1", &egg()).await;
    let slow = s.schedule(&[("project", "r"), ("spider", "slow")]).await;
    s.wait_state(&slow, "running", LONG).await;
    let waiting = s
        .schedule(&[
            ("project", "r"),
            ("spider", "echo"),
            ("jobid", "waiting"),
            ("priority", "3"),
        ])
        .await;
    s.stop().await; // SIGINT to the slow crawl; `waiting` stays queued.
    let s = TestServer::start_in(dir.path(), config).await;
    s.wait_state(&waiting, "finished", LONG).await;
    let finished = s.get("listjobs.json", &[]).await["finished"].clone();
    let ids: Vec<&str> = finished
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["waiting", slow.as_str()]);
    s.stop().await;
}

/// With a free slot, a scheduled job starts on the schedule's wake-up, and the next one when
/// the cancelled crawl's exit frees the slot: the poll is a day here (`test_config`), the wait
/// 90 s, so a broken wake-up fails the test. Prints the schedule → running latency (the
/// benchmark measures it; no timed assertion here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_start_the_moment_they_are_scheduled() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
    s.add_version("fast", "1", &egg()).await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        let id = format!("fast{i}");
        let t0 = Instant::now();
        s.schedule(&[("project", "fast"), ("spider", "slow"), ("jobid", &id)])
            .await;
        support::wait_until_async("running", LONG, || async {
            let v = s.get("listjobs.json", &[]).await;
            v["running"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == id.as_str() && e["pid"].is_u64())
                .then_some(())
        })
        .await;
        latencies.push(t0.elapsed());
        s.post(
            "cancel.json",
            &[("project", "fast"), ("job", &id), ("signal", "KILL")],
        )
        .await;
        s.wait_state(&id, "finished", LONG).await;
    }
    latencies.sort();
    println!(
        "schedule -> running (pid known): p50 {:?}, max {:?}",
        latencies[2], latencies[4]
    );
    s.stop().await;
}

/// Cancel stops the crawl's whole process group: a program the spider started dies with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_programs_a_spider_started() {
    let s = TestServer::start(|_| {}).await;
    s.add_version("gc", "1", &egg()).await;
    let pid_file = s.root().join("grandchild.pid");
    let job = s
        .schedule(&[
            ("project", "gc"),
            ("spider", "slow"),
            ("child_pid_file", &pid_file.display().to_string()),
        ])
        .await;
    let grandchild: i32 = support::wait_until_async("the grandchild's pid", LONG, || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await;
    assert!(
        scrapyd_rs::process::identity(grandchild as u32).is_some(),
        "the grandchild runs"
    );
    assert_eq!(
        s.post(
            "cancel.json",
            &[("project", "gc"), ("job", &job), ("signal", "KILL")]
        )
        .await["prevstate"],
        "running"
    );
    s.wait_state(&job, "finished", LONG).await;
    support::wait_until_async("the grandchild to be gone", LONG, || async {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    })
    .await;
    s.stop().await;
}
