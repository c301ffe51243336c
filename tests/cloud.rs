//! The Scrapy Cloud API with the real `scrapinghub` client: every example of its Overview
//! chapter (tests/clients/scrapinghub_overview.py) against the real server, with real crawls of
//! a local site, on the same projects and jobs as the Scrapyd endpoints.

mod support;

use std::time::Duration;
use support::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrapinghub_client_overview_works_unchanged() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
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

#[tokio::test]
async fn unknown_api_keys_are_refused_when_keys_are_configured() {
    let s = TestServer::start(|c| c.api_keys = vec!["good".into()]).await;
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
