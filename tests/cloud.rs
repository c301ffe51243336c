//! The Scrapy Cloud API with the real `scrapinghub` client: every example of its Overview
//! chapter (tests/clients/scrapinghub_overview.py) against the real server, with real crawls of
//! a local site, on the same projects and jobs as the Scrapyd endpoints.

mod support;

use std::time::Duration;
use support::server::{Backend, TestServer};

// The Scrapy Cloud clients on both storage backends.
on_both_backends!(
    the_scrapinghub_client_overview_works_unchanged,
    shub_deploys_schedules_and_reads_items
);

async fn the_scrapinghub_client_overview_works_unchanged(backend: Backend) {
    let store = backend.store();
    let s = TestServer::start(|c| {
        store.apply(c);
        c.max_proc = 1;
    })
    .await;
    let site = support::Site::start();
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("1", "r1", &egg).await["status"], "ok");
    // A job scheduled the Scrapyd way, finished before the client starts.
    let job = s.schedule(&[("project", "1"), ("spider", "echo")]).await;
    s.wait_state(&job, "finished", Duration::from_secs(90))
        .await;
    let script = support::repo_root().join("tests/clients/scrapinghub_overview.py");
    let url = s.url.clone();
    let site_url = site.url();
    let out = tokio::task::spawn_blocking(move || {
        support::run_checked(
            support::venv()
                .command("python")
                .arg(script)
                .args([&url, &site_url, &job]),
            "scrapinghub_overview.py",
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "ok", "{stdout}");
    s.stop().await;
}

/// Waits until a job of the Scrapy Cloud API reaches `state`.
async fn wait_cloud_state(s: &TestServer, key: &str, state: &str) {
    support::wait_until_async(
        &format!("{key} {state}"),
        Duration::from_secs(90),
        || async {
            let url = format!("{}/storage/jobs/{key}/state", s.url);
            let text = s.client.get(url).send().await.ok()?.text().await.ok()?;
            (text.trim() == format!("\"{state}\"")).then_some(())
        },
    )
    .await;
}

async fn shub_deploys_schedules_and_reads_items(backend: Backend) {
    let store = backend.store();
    let s = TestServer::start(|c| store.apply(c)).await;
    let project = support::project_copy(&support::test_project_dir());
    std::fs::write(
        project.path().join("scrapinghub.yml"),
        format!(
            "projects:\n  default: 7\nendpoints:\n  default: {}/api/\nversion: r1\n",
            s.url
        ),
    )
    .unwrap();
    let dir = project.path().to_path_buf();
    let url = s.url.clone();
    let shub = move |args: &[&str]| {
        let mut cmd = support::venv().command("shub");
        cmd.args(args)
            .current_dir(&dir)
            .env("SHUB_APIKEY", "0123456789abcdef")
            .env("SHUB_STORAGE", format!("{url}/storage/"));
        String::from_utf8_lossy(&support::run_checked(&mut cmd, "shub").stdout).into_owned()
    };
    let deploy = shub.clone();
    tokio::task::spawn_blocking(move || deploy(&["deploy"]))
        .await
        .unwrap();
    // Deployed as Scrapyd project "7".
    assert_eq!(
        s.get("listversions.json", &[("project", "7")]).await["versions"],
        serde_json::json!(["r1"])
    );
    let schedule = shub.clone();
    let out = tokio::task::spawn_blocking(move || {
        schedule(&[
            "schedule", "echo", "-a", "foo=bar", "-t", "mytag", "-p", "3",
        ])
    })
    .await
    .unwrap();
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("7/") && w.matches('/').count() == 2)
        .unwrap_or_else(|| panic!("no job key in: {out}"))
        .trim_end_matches(['.', ','])
        .to_owned();
    wait_cloud_state(&s, &key, "finished").await;
    let items_key = key.clone();
    let items = tokio::task::spawn_blocking(move || shub(&["items", &items_key]))
        .await
        .unwrap();
    let item: serde_json::Value = serde_json::from_str(items.lines().next().unwrap_or("")).unwrap();
    assert_eq!(item["args"]["foo"], "bar", "{items}");
    let meta: serde_json::Value = s
        .client
        .get(format!("{}/storage/jobs/{key}", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["tags"], serde_json::json!(["mytag"]));
    assert_eq!(meta["priority"], 3);
    assert_eq!(meta["close_reason"], "finished");
    s.stop().await;
}

#[tokio::test]
async fn unknown_api_keys_are_refused_when_keys_are_configured() {
    let s =
        TestServer::start(|c| c.api_keys = vec![scrapyd_rs::config::ApiKey::every_project("good")])
            .await;
    let get = |path: &str, user: &str| {
        s.client
            .get(format!("{}{path}", s.url))
            .basic_auth(user, Some(""))
            .send()
    };
    assert_eq!(
        get("/storage/projects/jobsummaries", "bad")
            .await
            .unwrap()
            .status(),
        401
    );
    // The server's clock is public, as on Scrapy Cloud.
    assert_eq!(
        get("/storage/system/ts", "bad").await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/api/scrapyd/listprojects.json", "bad")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get("/storage/system/ts", "good").await.unwrap().status(),
        200
    );
    let r = get("/api/scrapyd/listprojects.json", "good").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["projects"], serde_json::json!([]));
    // The Scrapyd endpoints are not behind API keys.
    assert_eq!(s.get("daemonstatus.json", &[]).await["status"], "ok");
    s.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_clear_errors_and_change_nothing() {
    let s = TestServer::start(|_| {}).await;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("5", "r1", &egg).await["status"], "ok");
    let url = |path: &str| format!("{}/{path}", s.url);
    let status_and_text = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };
    // A job for an external runner, to aim the bad writes at.
    let r = s
        .client
        .post(url("storage/jobq/5/push"))
        .body(r#"{"spider": "ext", "state": "running"}"#)
        .send()
        .await
        .unwrap();
    let pushed: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let key = pushed["key"].as_str().unwrap().to_owned();
    let get = |path: String| s.client.get(url(&path)).send();
    let post = |path: String, body: Vec<u8>| s.client.post(url(&path)).body(body).send();
    let cases: Vec<(u16, reqwest::Response, &str)> = vec![
        (
            404,
            get("storage/jobq/99/list".into()).await.unwrap(),
            "project 99 not found",
        ),
        (
            400,
            get("storage/jobq/x/list".into()).await.unwrap(),
            "invalid project id: x",
        ),
        (
            400,
            get("storage/jobq/5/list?state=done".into()).await.unwrap(),
            "invalid state: done",
        ),
        (
            400,
            get("storage/jobq/5/list?startts=soon".into())
                .await
                .unwrap(),
            "invalid startts",
        ),
        (
            400,
            get(format!("storage/items/{key}?filter=[1")).await.unwrap(),
            "invalid filter",
        ),
        (
            400,
            get(format!("storage/items/{key}?filter=[\"a\",\"~\",[]]"))
                .await
                .unwrap(),
            "unknown filter operator",
        ),
        (
            400,
            get(format!("storage/items/{key}?start=1/2")).await.unwrap(),
            "invalid entry key",
        ),
        (
            404,
            get("storage/jobs/5/1/999".into()).await.unwrap(),
            "not found",
        ),
        (
            400,
            get("storage/jobs/5/1/x".into()).await.unwrap(),
            "invalid job key",
        ),
        (
            400,
            post(
                "storage/jobq/5/push".into(),
                b"{\"state\": \"pending\"}".to_vec(),
            )
            .await
            .unwrap(),
            "missing spider",
        ),
        (
            400,
            post("storage/jobq/5/update".into(), b"not json".to_vec())
                .await
                .unwrap(),
            "Error parsing data",
        ),
        (
            400,
            post(
                "storage/jobq/5/update".into(),
                format!("{{\"key\": \"{key}\", \"state\": \"gone\"}}").into_bytes(),
            )
            .await
            .unwrap(),
            "invalid state",
        ),
        (
            400,
            post(
                format!("storage/items/{key}"),
                b"{\"a\": 1}\n{oops\n".to_vec(),
            )
            .await
            .unwrap(),
            "Error parsing data, line 2",
        ),
        (
            413,
            post(
                format!("storage/items/{key}"),
                format!("{{\"a\": \"{}\"}}", "x".repeat(1024 * 1024)).into_bytes(),
            )
            .await
            .unwrap(),
            "too large",
        ),
        (
            400,
            post(
                format!("storage/jobs/{key}/state"),
                b"\"finished\"".to_vec(),
            )
            .await
            .unwrap(),
            "state cannot be set",
        ),
    ];
    for (expected, response, needle) in cases {
        let url = response.url().to_string();
        let (status, text) = status_and_text(response).await;
        assert_eq!(status, expected, "{url}: {text}");
        assert!(text.contains(needle), "{url}: {text}");
    }
    let gz = s
        .client
        .post(url(&format!("storage/items/{key}")))
        .header("content-encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status().as_u16(), 400);
    // Nothing of that was stored: no item, the job still running.
    let stats: serde_json::Value = s
        .client
        .get(url(&format!("storage/items/{key}/stats")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totals"]["input_values"], 0);
    let state = s
        .client
        .get(url(&format!("storage/jobs/{key}/state")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state.trim(), "\"running\"");
    // Dash errors are Scrapyd-style envelopes the client turns into BadRequest.
    let long_arg = "x".repeat(70_000);
    for (path, form, needle) in [
        (
            "api/run.json",
            vec![("project", "5"), ("spider", "nope")],
            "spider 'nope' not found",
        ),
        (
            "api/run.json",
            vec![("project", "5"), ("spider", "echo"), ("priority", "9")],
            "priority is invalid",
        ),
        (
            "api/run.json",
            vec![
                ("project", "5"),
                ("spider", "echo"),
                ("job_settings", "[1]"),
            ],
            "job_settings is invalid",
        ),
        (
            "api/run.json",
            vec![("project", "x"), ("spider", "echo")],
            "invalid value for project: x",
        ),
        // The one scheduling path checks arguments for every API alike.
        (
            "api/run.json",
            vec![("project", "5"), ("spider", "echo"), ("_job", "j")],
            "'_job' is reserved and cannot be a spider argument",
        ),
        (
            "api/run.json",
            vec![("project", "5"), ("spider", "echo"), ("arg", &long_arg)],
            "spider argument 'arg' is too long",
        ),
        (
            "api/jobs/update.json",
            vec![("project", "5"), ("job", "5/1/1")],
            "No update modifiers provided",
        ),
        (
            "api/jobs/update.json",
            vec![("project", "5"), ("job", "6/1/1"), ("add_tag", "t")],
            "not a job of this project",
        ),
    ] {
        let v: serde_json::Value = s
            .client
            .post(url(path))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "error", "{path} {form:?}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{path} {form:?}: {v}"
        );
    }
    // No job was queued by any of them.
    assert_eq!(s.get("daemonstatus.json", &[]).await["pending"], 0);
    s.stop().await;
}
