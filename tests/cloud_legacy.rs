//! The legacy Scrapy Cloud clients, unmodified: every example of python-scrapinghub's "Legacy
//! clients" chapter (`Connection`, `HubstorageClient`) and the gaps the current client hit
//! (tests/clients/scrapinghub_legacy.py) against the real server and real crawls of a local
//! site; the old dash API's bad inputs; API keys with project scopes; extra eggs through
//! `shub deploy-egg`, `shub deploy` and `shub fetch-eggs`.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_clients_work_unchanged() {
    let s = TestServer::start(|c| c.max_proc = 2).await;
    let site = support::Site::start();
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("3", "r1", &egg).await["status"], "ok");
    let script = support::repo_root().join("tests/clients/scrapinghub_legacy.py");
    let (url, site_url) = (s.url.clone(), site.url());
    let out = tokio::task::spawn_blocking(move || {
        support::run_checked(
            support::venv()
                .command("python")
                .arg(script)
                .args([&url, &site_url]),
            "scrapinghub_legacy.py",
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "ok", "{stdout}");
    // The jobs pushed for a deployed spider ran here, as Scrapyd jobs too.
    let listed = s.get("listjobs.json", &[("project", "3")]).await;
    let echoes = listed["finished"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["spider"] == "echo")
        .count();
    assert_eq!(echoes, 4, "{listed}");
    s.stop().await;
}

/// A status and the JSON (or text) of an answer.
async fn answer(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(text.lines().next().unwrap_or(""))
        .unwrap_or_else(|_| Value::String(text.clone()));
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_dash_api_refuses_bad_inputs_and_changes_nothing() {
    let s = TestServer::start(|_| {}).await;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("5", "r1", &egg).await["status"], "ok");
    assert_eq!(s.add_version("6", "r1", &egg).await["status"], "ok");
    let url = |path: &str| format!("{}/{path}", s.url);
    // A job with data of project 5 and one of project 6 (registered, not run).
    let push = |p: &'static str| {
        let s = &s;
        async move {
            let r = s
                .client
                .post(format!("{}/storage/jobq/{p}/push", s.url))
                .body(r#"{"spider": "ext", "state": "running"}"#)
                .send()
                .await
                .unwrap();
            let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            v["key"].as_str().unwrap().to_owned()
        }
    };
    let key = push("5").await;
    let other = push("6").await;
    let r = s
        .client
        .post(url(&format!("storage/items/{key}")))
        .body("{\"a\": 1}\n{\"a\": 2}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let get = |path: String| s.client.get(url(&path)).send();
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        s.client.post(url(path)).form(&form).send()
    };
    // Dash envelopes: HTTP 200 and {"status": "error", "message": …}.
    let envelopes = vec![
        (
            get("api/jobs/list.json?project=5&foo=1".into()).await,
            "unknown parameter 'foo'",
        ),
        (
            get("api/jobs/list.jl?project=5&count=many".into()).await,
            "count is invalid",
        ),
        (
            get("api/jobs/list.json?project=5&offset=9".into()).await,
            "9 is past the end: 1 jobs match",
        ),
        (
            get(format!("api/jobs/list.json?project=5&job={other}")).await,
            "not a job of this project",
        ),
        (
            get("api/jobs/list.json?project=5&job=5/x".into()).await,
            "not a job key",
        ),
        (
            get("api/jobs/count.json?project=5&state=done".into()).await,
            "state is invalid",
        ),
        (
            get("api/jobs/list.json?project=99".into()).await,
            "project '99' not found",
        ),
        (
            get("api/jobs/list.json?project=x".into()).await,
            "invalid value for project: x",
        ),
        (
            post("api/jobs/update.json", vec![("project", "5".into())]).await,
            "No update modifiers provided",
        ),
        (
            post(
                "api/jobs/update.json",
                vec![
                    ("project", "5".into()),
                    ("add_tag", "t".into()),
                    ("tag", "t".into()),
                ],
            )
            .await,
            "unknown parameter 'tag'",
        ),
        (
            post("api/jobs/stop.json", vec![("project", "5".into())]).await,
            "'job' parameter is required",
        ),
        (
            post(
                "api/jobs/stop.json",
                vec![("project", "5".into()), ("job", other.clone())],
            )
            .await,
            "not a job of this project",
        ),
        (
            post(
                "api/jobs/delete.json",
                vec![("project", "5".into()), ("job", "5/1/999".into())],
            )
            .await,
            "job 5/1/999 not found",
        ),
        (
            post(
                "api/reports/add.json",
                vec![
                    ("project", "5".into()),
                    ("job", key.clone()),
                    ("key", "k".into()),
                    ("content_type", "text/html".into()),
                    ("content", "x".into()),
                ],
            )
            .await,
            "content_type is invalid",
        ),
        (
            post(
                "api/reports/add.json",
                vec![
                    ("project", "5".into()),
                    ("key", "k".into()),
                    ("content_type", "text/plain".into()),
                    ("content", "x".into()),
                ],
            )
            .await,
            "'job' parameter is required",
        ),
        (
            post(
                "api/reports/add.json",
                vec![
                    ("project", "5".into()),
                    ("job", key.clone()),
                    ("key", "k".into()),
                    ("content_type", "text/plain".into()),
                    ("content", "x".repeat(1024 * 1024 + 1)),
                ],
            )
            .await,
            "content is invalid",
        ),
        (
            post(
                "api/eggs/delete.json",
                vec![("project", "5".into()), ("name", "nothing".into())],
            )
            .await,
            "egg 'nothing' not found",
        ),
        (
            get("api/eggs/list.json?project=5&name=x".into()).await,
            "unknown parameter 'name'",
        ),
    ];
    for (response, needle) in envelopes {
        let response = response.unwrap();
        let url = response.url().to_string();
        let (status, v) = answer(response).await;
        assert_eq!(status, 200, "{url}: {v}");
        assert_eq!(v["status"], "error", "{url}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(needle),
            "{url}: {v}"
        );
    }
    // Data reads: 400 (404 for a job that does not exist), so HTTP clients notice.
    let reads = vec![
        (
            get(format!("api/items.jl?project=5&job={key}&count=x")).await,
            400,
            "count is invalid",
        ),
        (
            get(format!("api/items.jl?project=5&job={key}&offset=3")).await,
            400,
            "3 is past the end: the job has 2 items",
        ),
        (
            get(format!("api/items.jl?project=5&job={key}&offset=-1")).await,
            400,
            "offset is invalid",
        ),
        (
            get(format!("api/items.jl?project=5&job={key}&meta=_x")).await,
            400,
            "meta is invalid",
        ),
        (
            get(format!("api/items.json?project=5&job={other}")).await,
            400,
            "not a job of this project",
        ),
        (
            get("api/items.jl?project=5&job=5/1/999".into()).await,
            404,
            "job 5/1/999 not found",
        ),
        (
            get("api/items.jl?project=5&spider=nothing".into()).await,
            404,
            "spider nothing has no finished job",
        ),
        (
            get(format!("api/log.jl?project=5&job={key}&level=LOUD")).await,
            400,
            "level is invalid",
        ),
        (
            get("api/log.jl?project=5".into()).await,
            400,
            "'job' parameter is required",
        ),
        (
            get("api/as/project-slybot.zip?project=5".into()).await,
            410,
            "Portia",
        ),
        (
            post(
                "api/as/spider-properties.json",
                vec![("project", "5".into()), ("spider", "s".into())],
            )
            .await,
            410,
            "Portia",
        ),
    ];
    for (response, expected, needle) in reads {
        let response = response.unwrap();
        let url = response.url().to_string();
        let (status, v) = answer(response).await;
        assert_eq!(status.as_u16(), expected, "{url}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(needle),
            "{url}: {v}"
        );
    }
    // An egg that is not a zip, or whose name would leave its folder.
    for (name, egg, needle) in [
        ("lib", b"not a zip".to_vec(), "egg is not a ZIP file"),
        (
            "../lib",
            support::build_egg(&helper_dir()),
            "DirectoryTraversalError",
        ),
    ] {
        let form = reqwest::multipart::Form::new()
            .text("project", "5")
            .text("name", name)
            .text("version", "1.0")
            .part(
                "egg",
                reqwest::multipart::Part::bytes(egg).file_name("lib.egg"),
            );
        let r = s
            .client
            .post(url("api/eggs/add.json"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (_, v) = answer(r).await;
        assert!(
            v["message"].as_str().unwrap_or("").contains(needle),
            "{name}: {v}"
        );
    }
    // Storage: a push whose second line is bad makes no job; a body over the limit gets the
    // storage API's JSON 413, a large one under it is taken.
    for (lines, needle) in [
        (
            "{\"spider\": \"echo\"}\n{\"spider\": \"echo\", \"priority\": 9}\n",
            "invalid priority 9",
        ),
        (
            "{\"spider\": \"fine\"}\n{\"spider\": \"a/b\"}\n",
            "DirectoryTraversalError",
        ),
    ] {
        let r = s
            .client
            .post(url("storage/jobq/5/push"))
            .body(lines)
            .send()
            .await
            .unwrap();
        let (status, v) = answer(r).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    // Keys only scrapyd-rs writes cannot be set, nor deleted.
    let r = s
        .client
        .post(url(&format!("storage/jobs/{key}")))
        .body(r#"{"external": false, "auth": "x", "scrapyd_job": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (method, field) in [
        (reqwest::Method::POST, "external"),
        (reqwest::Method::DELETE, "auth"),
        (reqwest::Method::DELETE, "state"),
    ] {
        let r = s
            .client
            .request(method, url(&format!("storage/jobs/{key}/{field}")))
            .body("true")
            .send()
            .await
            .unwrap();
        let (status, v) = answer(r).await;
        assert_eq!(status, 400, "{field}: {v}");
    }
    // jobs/count.json: its offset does not change the total.
    let (_, v) = answer(
        get("api/jobs/count.json?project=5&offset=50".into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["total"], 1, "{v}");
    let big = s
        .client
        .post(url("storage/activity/5"))
        .body(vec![b' '; 64 * 1024 * 1024 + 1024])
        .send()
        .await
        .unwrap();
    let (status, v) = answer(big).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"], "Payload Too Large", "{v}");
    let event = format!(
        "{{\"event\": \"e\", \"x\": \"{}\"}}\n",
        "y".repeat(3 * 1024 * 1024)
    );
    let r = s
        .client
        .post(url("storage/activity/5"))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a 3 MB body is under the storage limit");
    // Nothing of that changed a job, queued one or stored an egg.
    let (_, jobs) = answer(
        get(
            "api/jobs/list.json?project=5&state=pending&state=running&state=finished&state=deleted"
                .into(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(jobs["total"], 1, "{jobs}");
    assert_eq!(jobs["jobs"][0]["tags"], json!([]), "{jobs}");
    assert_eq!(jobs["jobs"][0]["state"], "running", "{jobs}");
    let meta: Value = s
        .client
        .get(url(&format!("storage/jobs/{key}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta.get("reports").is_none(), "{meta}");
    assert_eq!(meta["external"], true, "{meta}");
    assert_ne!(meta["scrapyd_job"], "x", "{meta}");
    let token = get("storage/jobq/5/list?state=running&jobmeta=auth".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !token.contains("auth"),
        "a job's token in a listing: {token}"
    );
    assert_eq!(s.get("daemonstatus.json", &[]).await["pending"], 0);
    let (_, eggs) = answer(get("api/eggs/list.json?project=5".into()).await.unwrap()).await;
    assert_eq!(eggs["eggs"], json!([]), "{eggs}");
    for stray in ["eggs/5/lib.egg", "eggs/lib.egg", "eggs/5/deps"] {
        assert!(!s.root().join(stray).exists(), "{stray}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_at_once_make_one_job() {
    let s = TestServer::start(|c| c.max_proc = 1).await;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("4", "r1", &egg).await["status"], "ok");
    let run = || {
        let (client, url) = (s.client.clone(), format!("{}/api/run.json", s.url));
        tokio::spawn(async move {
            let form = [("project", "4"), ("spider", "slow"), ("seconds", "300")];
            answer(client.post(url).form(&form).send().await.unwrap()).await
        })
    };
    let runs: Vec<_> = (0..8).map(|_| run()).collect();
    let mut made = 0;
    for r in runs {
        let (_, v) = r.await.unwrap();
        if v["status"] == "ok" {
            made += 1;
        } else {
            let message = v["message"].as_str().unwrap_or_default();
            assert!(message.contains("slow already scheduled"), "{v}");
        }
    }
    assert_eq!(made, 1);
    let push = || {
        let (client, url) = (s.client.clone(), format!("{}/storage/jobq/4/push", s.url));
        tokio::spawn(async move {
            let line = r#"{"spider": "slow", "unique": "u1", "spider_args": {"seconds": "300"}}"#;
            answer(client.post(url).body(line).send().await.unwrap()).await
        })
    };
    let pushes: Vec<_> = (0..8).map(|_| push()).collect();
    let mut keys = Vec::new();
    for p in pushes {
        let (status, v) = p.await.unwrap();
        assert_eq!(status, 200, "{v}");
        match v["key"].as_str() {
            Some(k) => keys.push(k.to_owned()),
            None => {
                let error = v["error"].as_str().unwrap_or_default();
                assert!(error.starts_with("Active job exists with key"), "{v}");
            }
        }
    }
    assert_eq!(keys.len(), 1, "{keys:?}");
    let status = s.get("daemonstatus.json", &[]).await;
    let active = status["pending"].as_i64().unwrap() + status["running"].as_i64().unwrap();
    assert_eq!(active, 2, "{status}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_follow_the_crawl_and_reserved_metadata_stays_out() {
    let s = TestServer::start(|_| {}).await;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("9", "r1", &egg).await["status"], "ok");
    let url = |path: &str| format!("{}/{path}", s.url);
    let post = |path: &str, body: String| s.client.post(url(path)).body(body).send();
    let run: Value = s
        .client
        .post(url("api/run.json"))
        .form(&[("project", "9"), ("spider", "slow"), ("seconds", "300")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = run["jobid"].as_str().unwrap().to_owned();
    let scrapyd_job =
        support::wait_until_async("the crawl to run", Duration::from_secs(90), || async {
            let v: Value = s
                .client
                .get(url(&format!("storage/jobs/{key}")))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["state"] == "running").then(|| v["scrapyd_job"].as_str().unwrap().to_owned())
        })
        .await;
    // A job scrapyd-rs runs cannot be moved back to pending (nor its crawl hidden that way).
    let r = post(
        "storage/jobq/9/update",
        format!("{{\"key\": \"{key}\", \"state\": \"pending\"}}"),
    )
    .await
    .unwrap();
    let (status, v) = answer(r).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("state follows its crawl"),
        "{v}"
    );
    assert_eq!(s.state(&scrapyd_job).await, "running");
    // Deleting it stops the crawl before its row and data go.
    let r = s
        .client
        .post(url("api/jobs/delete.json"))
        .form(&[("project", "9"), ("job", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await.1["count"], 1);
    s.wait_state(&scrapyd_job, "finished", Duration::from_secs(90))
        .await;
    assert_eq!(
        s.client
            .get(url(&format!("storage/jobs/{key}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // startjob's parameters cannot set what only scrapyd-rs writes.
    let r = post("storage/jobq/9/push", "{\"spider\": \"ext\"}".into())
        .await
        .unwrap();
    let pushed: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let ext = pushed["key"].as_str().unwrap().to_owned();
    let r = post(
        "storage/jobq/9/startjob",
        r#"{"external": false, "_key": "8/1/1", "key": "x", "state": "finished", "host": "h"}"#
            .into(),
    )
    .await
    .unwrap();
    let started: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        (&started["key"], &started["state"], &started["host"]),
        (&json!(ext), &json!("running"), &json!("h")),
        "{started}"
    );
    let listed = s
        .client
        .get(url("storage/jobs/9?state=running"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&line["_key"], &line["external"]),
        (&json!(ext), &json!(true)),
        "{line}"
    );
    let r = post("storage/jobq/9/cancel", format!("[{{\"key\": \"{ext}\"}}]"))
        .await
        .unwrap();
    assert_eq!(
        answer(r).await.1["count"],
        1,
        "the external job is still its runner's to stop"
    );
    s.stop().await;
}

/// `tests/projects/helper_lib`: a library deployed as an extra egg.
fn helper_dir() -> std::path::PathBuf {
    support::repo_root().join("tests/projects/helper_lib")
}

/// API keys read from a configuration file's `[api_keys]` section (the real parser).
fn keys_from(conf: &str) -> Vec<scrapyd_rs::config::ApiKey> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.conf");
    std::fs::write(&file, conf).unwrap();
    let opts = scrapyd_rs::config::LoadOptions {
        cwd: dir.path().to_path_buf(),
        home: None,
        system: false,
        extra_files: vec![file],
        env: Vec::new(),
    };
    scrapyd_rs::config::Config::load(&opts).unwrap().api_keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_reach_exactly_their_projects() {
    let keys = keys_from(
        "[api_keys]\n\
         AlphaKey = alpha 7\n\
         betakey = beta\n\
         readonly = ro:alpha\n\
         adminkey = admin\n\
         everything = *\n",
    );
    let s = TestServer::start(|c| {
        c.api_keys = keys;
        c.max_proc = 1;
    })
    .await;
    let egg = support::build_egg(&support::test_project_dir());
    for p in ["alpha", "beta", "gamma"] {
        assert_eq!(s.add_version(p, "r1", &egg).await["status"], "ok");
    }
    let url = |path: &str| format!("{}/{path}", s.url);
    let get = |key: &str, path: &str| s.client.get(url(path)).basic_auth(key, Some("")).send();
    let post = |key: &str, path: &str, body: String| {
        s.client
            .post(url(path))
            .basic_auth(key, Some(""))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let projects = |key: &'static str| {
        let get = &get;
        async move {
            let (_, v) = answer(get(key, "api/scrapyd/listprojects.json").await.unwrap()).await;
            let mut ids: Vec<i64> = v["projects"]
                .as_array()
                .unwrap_or_else(|| panic!("{key}: {v}"))
                .iter()
                .map(|p| p.as_i64().unwrap())
                .collect();
            ids.sort();
            ids
        }
    };
    let all = projects("everything").await;
    assert_eq!(all.len(), 3, "{all:?}");
    let (alpha, beta, gamma) = (all[0], all[1], all[2]);
    assert_eq!(projects("AlphaKey").await, [alpha]);
    assert_eq!(projects("betakey").await, [beta]);
    assert_eq!(projects("readonly").await, [alpha]);
    // An admin reaches every project but belongs to none, as on Scrapy Cloud.
    assert_eq!(projects("adminkey").await, Vec::<i64>::new());
    // Keys are case-sensitive.
    assert_eq!(
        get("alphakey", "api/scrapyd/listprojects.json")
            .await
            .unwrap()
            .status(),
        403
    );

    // Scheduling: each key in its projects only; refusals queue nothing.
    let run = |key: &'static str, project: i64| {
        let post = &post;
        async move {
            answer(
                post(
                    key,
                    "api/run.json",
                    format!("project={project}&spider=slow&seconds=300&k={key}"),
                )
                .await
                .unwrap(),
            )
            .await
        }
    };
    let (status, v) = run("AlphaKey", alpha).await;
    assert_eq!((status.as_u16(), &v["status"]), (200, &json!("ok")), "{v}");
    let alpha_job = v["jobid"].as_str().unwrap().to_owned();
    for (key, project) in [("betakey", alpha), ("readonly", alpha), ("AlphaKey", gamma)] {
        let (status, v) = run(key, project).await;
        assert_eq!(status, 403, "{key} {project}: {v}");
        assert_eq!(v["message"], "Authentication failed", "{v}");
    }
    let (status, _) = run("betakey", beta).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.get("daemonstatus.json", &[]).await["pending"]
            .as_i64()
            .unwrap()
            + s.get("daemonstatus.json", &[]).await["running"]
                .as_i64()
                .unwrap(),
        2
    );

    // Reading: the read-only key reads alpha, the beta key does not.
    let list = |key: &'static str, project: i64| {
        let get = &get;
        async move {
            answer(
                get(
                    key,
                    &format!("api/jobs/list.json?project={project}&state=pending&state=running"),
                )
                .await
                .unwrap(),
            )
            .await
        }
    };
    let (status, v) = list("readonly", alpha).await;
    assert_eq!(
        (status.as_u16(), v["total"].as_i64()),
        (200, Some(1)),
        "{v}"
    );
    assert_eq!(list("betakey", alpha).await.0, 403);
    assert_eq!(list("adminkey", alpha).await.1["total"], 1);
    // Tags: the read-only key may not change them.
    let tag = |key: &'static str| {
        let post = &post;
        let job = alpha_job.clone();
        async move {
            answer(
                post(
                    key,
                    "api/jobs/update.json",
                    format!("project={alpha}&job={job}&add_tag=x"),
                )
                .await
                .unwrap(),
            )
            .await
        }
    };
    assert_eq!(tag("readonly").await.0, 403);
    assert_eq!(tag("betakey").await.0, 403);
    assert_eq!(tag("AlphaKey").await.1["count"], 1);

    // The storage API: 401 outside a key's projects, and for writes of a read-only key.
    let storage = |key: &'static str, method: reqwest::Method, path: String, body: &'static str| {
        let s = &s;
        async move {
            s.client
                .request(method, format!("{}/storage/{path}", s.url))
                .basic_auth(key, Some(""))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    use reqwest::Method;
    let alpha_key = alpha_job.clone();
    assert_eq!(
        storage(
            "readonly",
            Method::GET,
            format!("jobq/{alpha}/list?state=pending&state=running"),
            ""
        )
        .await,
        200
    );
    assert_eq!(
        storage("readonly", Method::GET, format!("jobs/{alpha_key}"), "").await,
        200
    );
    assert_eq!(
        storage("betakey", Method::GET, format!("jobs/{alpha_key}"), "").await,
        401
    );
    assert_eq!(
        storage("betakey", Method::GET, format!("items/{alpha_key}"), "").await,
        401
    );
    assert_eq!(
        storage("betakey", Method::GET, format!("jobq/{alpha}/count"), "").await,
        401
    );
    assert_eq!(
        storage(
            "readonly",
            Method::POST,
            format!("jobq/{alpha}/push"),
            "{\"spider\": \"x\"}"
        )
        .await,
        401
    );
    assert_eq!(
        storage(
            "readonly",
            Method::POST,
            format!("jobs/{alpha_key}"),
            "{\"x\": 1}"
        )
        .await,
        401
    );
    assert_eq!(
        storage(
            "readonly",
            Method::POST,
            format!("collections/{alpha}/s/c"),
            "{\"_key\": \"k\"}"
        )
        .await,
        401
    );
    assert_eq!(
        storage(
            "readonly",
            Method::GET,
            format!("ids/{alpha}/spider/new?create=1"),
            ""
        )
        .await,
        401
    );
    assert_eq!(
        storage(
            "readonly",
            Method::GET,
            format!("ids/{alpha}/spider/slow"),
            ""
        )
        .await,
        200
    );
    assert_eq!(
        storage(
            "AlphaKey",
            Method::POST,
            format!("collections/{alpha}/s/c"),
            "{\"_key\": \"k\"}"
        )
        .await,
        200
    );
    assert_eq!(
        storage(
            "betakey",
            Method::GET,
            format!("collections/{alpha}/s/c"),
            ""
        )
        .await,
        401
    );
    assert_eq!(
        storage(
            "betakey",
            Method::GET,
            format!("activity/projects?p={alpha}&p={beta}"),
            ""
        )
        .await,
        401
    );
    assert_eq!(
        storage("nokey", Method::GET, format!("jobq/{alpha}/count"), "").await,
        401
    );
    // Nothing refused was written: no pushed job, no metadata, no spider id.
    let (_, v) = answer(
        get(
            "everything",
            &format!(
                "api/jobs/count.json?project={alpha}&state=pending&state=running&state=finished"
            ),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(v["total"], 1, "{v}");
    let meta: Value = get("everything", &format!("storage/jobs/{alpha_key}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta.get("x").is_none(), "{meta}");
    let (_, ids) = answer(
        get("everything", &format!("storage/ids/{alpha}/spider/new"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ids, Value::Null);

    // A job's token is never listed, whichever way a listing is asked for.
    for path in [
        format!("jobq/{alpha}/list?state=pending&state=running&jobmeta=auth"),
        format!("jobq/{alpha}/jobsummary?key={alpha_key}&jobmeta=auth"),
        format!("jobq/{alpha}/summary/running?jobmeta=auth"),
    ] {
        let text = get("readonly", &format!("storage/{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains("\"auth\""), "{path}: {text}");
    }
    // A project that does not exist and one the key may not read look the same.
    assert_eq!(
        storage("betakey", Method::GET, "activity/projects?p=999".into(), "").await,
        401
    );
    // HEAD is a read.
    let head = s
        .client
        .head(url(&format!("api/v2/projects/{alpha}/spiders/1")))
        .basic_auth("readonly", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // Cross-project summaries show what the key may read.
    let summaries = |key: &'static str| {
        let get = &get;
        async move {
            let (_, v) = answer(get(key, "storage/projects/jobsummaries").await.unwrap()).await;
            let mut ids: Vec<i64> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["project"].as_i64().unwrap())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(summaries("AlphaKey").await, [alpha]);
    assert_eq!(summaries("betakey").await, [beta]);
    assert_eq!(summaries("adminkey").await, [alpha, beta]);

    // A job's own credentials reach its data and its project's collections, nothing else.
    let r = post(
        "AlphaKey",
        &format!("storage/jobq/{alpha}/push"),
        "{\"spider\": \"ext\", \"state\": \"running\"}".into(),
    )
    .await
    .unwrap();
    let pushed: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let (job_key, token) = (
        pushed["key"].as_str().unwrap().to_owned(),
        pushed["auth"].as_str().unwrap().to_owned(),
    );
    let as_job = |method: Method, path: String, body: &'static str| {
        let (s, job_key, token) = (&s, job_key.clone(), token.clone());
        async move {
            s.client
                .request(method, format!("{}/{path}", s.url))
                .basic_auth(job_key, Some(token))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        as_job(
            Method::POST,
            format!("storage/items/{job_key}"),
            "{\"i\": 1}"
        )
        .await,
        200
    );
    assert_eq!(
        as_job(Method::GET, format!("storage/items/{job_key}"), "").await,
        200
    );
    assert_eq!(
        as_job(
            Method::POST,
            format!("storage/jobs/{job_key}"),
            "{\"m\": 1}"
        )
        .await,
        200
    );
    assert_eq!(
        as_job(Method::GET, format!("storage/collections/{alpha}/s/c"), "").await,
        200
    );
    assert_eq!(
        as_job(Method::GET, format!("storage/items/{alpha_key}"), "").await,
        401
    );
    assert_eq!(
        as_job(Method::GET, format!("storage/collections/{beta}/s/c"), "").await,
        401
    );
    assert_eq!(
        as_job(
            Method::POST,
            format!("storage/jobq/{alpha}/push"),
            "{\"spider\": \"x\"}"
        )
        .await,
        401
    );
    assert_eq!(
        as_job(Method::GET, "storage/projects/jobsummaries".into(), "").await,
        401
    );
    assert_eq!(
        as_job(Method::GET, "api/scrapyd/listprojects.json".into(), "").await,
        403
    );
    assert_eq!(
        as_job(Method::DELETE, format!("storage/jobs/{job_key}"), "").await,
        401,
        "a job may not remove itself"
    );
    // Once its job has ended, a job's token opens nothing.
    let finish = format!("{{\"key\": \"{job_key}\", \"state\": \"finished\"}}");
    let r = post("AlphaKey", &format!("storage/jobq/{alpha}/update"), finish)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        as_job(Method::GET, format!("storage/items/{job_key}"), "").await,
        401
    );
    assert_eq!(
        as_job(Method::GET, format!("storage/collections/{alpha}/s/c"), "").await,
        401
    );

    // Deploys through dash's addversion.json: to the key's projects only.
    let deploy = |key: &'static str, project: String| {
        let (s, egg) = (&s, egg.clone());
        async move {
            let form = reqwest::multipart::Form::new()
                .text("project", project)
                .text("version", "r2")
                .part(
                    "egg",
                    reqwest::multipart::Part::bytes(egg).file_name("p.egg"),
                );
            answer(
                s.client
                    .post(format!("{}/api/scrapyd/addversion.json", s.url))
                    .basic_auth(key, Some(""))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(deploy("betakey", alpha.to_string()).await.0, 403);
    assert_eq!(deploy("readonly", alpha.to_string()).await.0, 403);
    assert_eq!(deploy("betakey", "7".into()).await.0, 403);
    assert_eq!(
        s.get("listversions.json", &[("project", "alpha")]).await["versions"],
        json!(["r1"])
    );
    let (status, v) = deploy("AlphaKey", alpha.to_string()).await;
    assert_eq!(
        (status.as_u16(), &v["project"]),
        (200, &json!("alpha")),
        "{v}"
    );
    // A new project named by its id, granted by that id; a new id from the allocated range
    // would not be the id the project gets.
    assert_eq!(deploy("AlphaKey", "7".into()).await.1["status"], "ok");
    let (_, v) = deploy("everything", "1000000099".into()).await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("ids from 1000000000 up"),
        "{v}"
    );
    assert_eq!(projects("AlphaKey").await, [7, alpha]);

    // Bulk cancel by count is for admins.
    let bulk = |key: &'static str, project: i64| {
        let post = &post;
        async move {
            answer(
                post(
                    key,
                    &format!("storage/jobq/{project}/cancel?count=5"),
                    String::new(),
                )
                .await
                .unwrap(),
            )
            .await
        }
    };
    assert_eq!(bulk("AlphaKey", alpha).await.0, 403);
    let (status, v) = bulk("adminkey", alpha).await;
    assert_eq!(
        (status.as_u16(), v["count"].as_i64()),
        (200, Some(1)),
        "{v}"
    );
    s.stop().await;
}

/// Runs `shub` in `dir` with the key and storage endpoint of `s`; its output.
fn shub(dir: &Path, url: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = support::venv().command("shub");
    cmd.args(args)
        .current_dir(dir)
        .env("SHUB_APIKEY", "0123456789abcdef")
        .env("SHUB_STORAGE", format!("{url}/storage/"));
    cmd.output().unwrap()
}

fn shub_ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let out = shub(dir, url, args);
    assert!(
        out.status.success(),
        "shub {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for the job `key` to finish and returns its first item (through the storage API).
async fn first_item(s: &TestServer, key: &str) -> Value {
    support::wait_until_async(
        &format!("{key} finished"),
        Duration::from_secs(90),
        || async {
            let v: Value = s
                .client
                .get(format!("{}/storage/jobs/{key}/state", s.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v == "finished").then_some(())
        },
    )
    .await;
    let text = s
        .client
        .get(format!("{}/storage/items/{key}", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(text.lines().next().unwrap_or("")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_eggs_from_shub_reach_the_crawl() {
    let s = TestServer::start(|_| {}).await;
    let url = s.url.clone();
    let yml = format!("projects:\n  default: 8\nendpoints:\n  default: {url}/api/\n");
    let lib = support::project_copy(&helper_dir());
    std::fs::write(lib.path().join("scrapinghub.yml"), &yml).unwrap();
    let project = support::project_copy(&support::repo_root().join("tests/projects/uses_helper"));
    std::fs::write(
        project.path().join("scrapinghub.yml"),
        format!("{yml}version: v1\n"),
    )
    .unwrap();
    let (lib_dir, project_dir) = (lib.path().to_path_buf(), project.path().to_path_buf());

    // shub deploy-egg: the library becomes an extra egg of project 8; the project that imports
    // it then lists (at upload) and crawls with it on sys.path.
    let u = url.clone();
    let (l, p) = (lib_dir.clone(), project_dir.clone());
    tokio::task::spawn_blocking(move || {
        shub_ok(&l, &u, &["deploy-egg"]);
        shub_ok(&p, &u, &["deploy"]);
    })
    .await
    .unwrap();
    let eggs: Value = s
        .client
        .get(format!("{url}/api/eggs/list.json?project=8"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        eggs["eggs"],
        json!([{"name": "helperlib", "version": "1.0"}]),
        "{eggs}"
    );
    assert_eq!(
        s.get("listspiders.json", &[("project", "8")]).await["spiders"],
        json!(["helped"])
    );
    let run: Value = s
        .client
        .post(format!("{url}/api/run.json"))
        .form(&[("project", "8"), ("spider", "helped")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = first_item(&s, run["jobid"].as_str().unwrap()).await;
    let answer = item["answer"].as_str().unwrap_or_default();
    assert!(
        answer.starts_with("answered by helperlib from ") && answer.contains("/deps/helperlib-"),
        "{item}"
    );

    // shub fetch-eggs: the bundle holds the extra egg and the project's own.
    let (u, p) = (url.clone(), project_dir.clone());
    tokio::task::spawn_blocking(move || shub_ok(&p, &u, &["fetch-eggs"]))
        .await
        .unwrap();
    let bundle = std::fs::read(project_dir.join("eggs-8.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle)).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["__main__.egg", "helperlib.egg"]);

    // Without the extra egg, a new version cannot be listed, and is not stored.
    let r: Value = s
        .client
        .post(format!("{url}/api/eggs/delete.json"))
        .form(&[("project", "8"), ("name", "helperlib")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    std::fs::write(
        project_dir.join("scrapinghub.yml"),
        format!("{yml}version: v2\n"),
    )
    .unwrap();
    let (u, p) = (url.clone(), project_dir.clone());
    let out = tokio::task::spawn_blocking(move || shub(&p, &u, &["deploy"]))
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && said.contains("helperlib"),
        "{said}"
    );
    assert_eq!(
        s.get("listversions.json", &[("project", "8")]).await["versions"],
        json!(["v1"])
    );

    // shub deploy with `eggs:` in scrapinghub.yml sends the egg with the project.
    let built = lib_dir.join("dist");
    let lib_egg = std::fs::read_dir(&built)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "egg"))
        .unwrap();
    std::fs::write(
        project_dir.join("scrapinghub.yml"),
        format!(
            "{yml}version: v3\nrequirements:\n  eggs:\n    - {}\n",
            lib_egg.display()
        ),
    )
    .unwrap();
    let (u, p) = (url.clone(), project_dir.clone());
    tokio::task::spawn_blocking(move || shub_ok(&p, &u, &["deploy"]))
        .await
        .unwrap();
    assert_eq!(
        s.get("listversions.json", &[("project", "8")]).await["versions"],
        json!(["v1", "v3"])
    );
    let eggs: Value = s
        .client
        .get(format!("{url}/api/eggs/list.json?project=8"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        eggs["eggs"],
        json!([{"name": "helperlib", "version": "1.0"}]),
        "{eggs}"
    );
    let run: Value = s
        .client
        .post(format!("{url}/api/run.json"))
        .form(&[("project", "8"), ("spider", "helped")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(first_item(&s, run["jobid"].as_str().unwrap()).await["answer"].is_string());
    s.stop().await;
}
