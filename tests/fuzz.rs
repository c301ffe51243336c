//! Random requests — methods, paths, parameters, bodies (query, urlencoded, multipart) — at the
//! in-process server. Whatever arrives: no panic, every answer is well-formed (JSON for the
//! webservices, HTML or a file for pages), nothing is written outside the configured folders,
//! and the job state stays consistent (counts match listjobs, no job in two states).
//! Bounded: a fixed number of cases, so CI stays fast.

mod support;

use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::server::TestServer;

const PATHS: &[&str] = &[
    "daemonstatus.json",
    "addversion.json",
    "schedule.json",
    "cancel.json",
    "status.json",
    "listprojects.json",
    "listversions.json",
    "listspiders.json",
    "listjobs.json",
    "delversion.json",
    "delproject.json",
    "",
    "jobs",
    "logs/",
    "logs",
    "logs/known/",
    "items/",
    "logs/../x",
    "nothing",
    "schedule.json/",
    "%2e%2e/etc/passwd",
    "api/scrapyd/listprojects.json",
    "api/spiders/list.json",
    "api/run.json",
    "api/jobs/update.json",
    "api/scrapyd/addversion.json",
    "api/jobs/list.json",
    "api/jobs/list.jl",
    "api/jobs/count.json",
    "api/jobs/stop.json",
    "api/jobs/delete.json",
    "api/items.jl",
    "api/items.json",
    "api/log.jl",
    "api/log.json",
    "api/reports/add.json",
    "api/eggs/add.json",
    "api/eggs/list.json",
    "api/eggs/delete.json",
    "api/eggs/bundle.zip",
    "api/as/project-slybot.zip",
    "api/v2/projects/1000000000/spiders/1",
    "api/v2/projects/1000000000/spiders/1/tags",
    "storage/system/ts",
    "storage/ids/1000000000/spider/s1",
    "storage/jobq/1000000000/list",
    "storage/jobq/1000000000/count",
    "storage/jobq/1000000000/summary",
    "storage/jobq/1000000000/update",
    "storage/jobq/1000000000/cancel",
    "storage/jobq/1000000000/1/1/cancel",
    "storage/projects/jobsummaries",
    "storage/spiders/1000000000/lastjobsummary",
    "storage/jobs/1000000000",
    "storage/jobs/1000000000/1",
    "storage/jobs/1000000000/1/1",
    "storage/jobs/1000000000/1/1/tags",
    "storage/items/1000000000/1/1",
    "storage/items/1000000000/1/1/stats",
    "storage/logs/1000000000/1/1/0",
    "storage/items/1/1/1",
    "storage/items/1000000000/1/..%2f..",
    "storage/collections/1000000000/list",
    "storage/collections/1000000000/s/c",
    "storage/collections/1000000000/vcs/c",
    "storage/collections/1000000000/s/c/count",
    "storage/collections/1000000000/s/c/deleted",
    "storage/collections/1000000000/s/c/k",
    "storage/collections/1000000000/s/c/k/value",
    "storage/collections/1000000000/x/c",
    "storage/collections/1000000000/delete",
    "storage/collections/1000000000/rename",
    "storage/hcf/1000000000/list",
    "storage/hcf/1000000000/f/list",
    "storage/hcf/1000000000/f/s/a",
    "storage/hcf/1000000000/f/s/a/q",
    "storage/hcf/1000000000/f/s/a/q/deleted",
    "storage/hcf/1000000000/f/s/a/f",
];
const KEYS: &[&str] = &[
    "project",
    "spider",
    "job",
    "jobid",
    "version",
    "_version",
    "priority",
    "setting",
    "signal",
    "egg",
    "arg",
    "_job",
    "settings",
    "name",
    "add_tag",
    "filter",
    "start",
    "startafter",
    "count",
    "meta",
    "state",
    "key",
    "index",
    "prefix",
    "prefixcount",
    "startts",
    "endts",
    "nodata",
    "new_name",
    "mincount",
];
const VALUES: &[&str] = &[
    "known",
    "1000000000",
    "1000000000/1/1",
    "1000000000/1/1/0",
    "[\"level\", \">=\", [30]]",
    "{\"key\": \"1000000000/1/1\", \"state\": \"finished\"}",
    "s1",
    "",
    ".",
    "..",
    "../p",
    "a/b",
    "/etc",
    "x\0y",
    "ñ",
    "\u{202e}known",
    "1",
    "-1",
    "nan",
    "inf",
    "1e400",
    "INT",
    "KILL",
    "9",
    "A=1",
    "=",
    "%",
    "%zz",
    "+",
    "known/..",
    "\\",
    "\u{ff0e}\u{ff0e}",
    "j1",
];

#[derive(Debug, Clone)]
enum Body {
    None,
    Form,
    Multipart,
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    body: Body,
    form: Vec<(String, String)>,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(VALUES).prop_map(str::to_owned),
        "\\PC{0,12}",
        proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect()),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                proptest::sample::select(KEYS).prop_map(str::to_owned),
                "[a-z_]{1,6}"
            ],
            text(),
        ),
        0..6,
    )
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::sample::select(&["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"][..]),
        prop_oneof![4 => proptest::sample::select(PATHS).prop_map(str::to_owned), 1 => "[a-z./%]{0,16}"],
        pairs(),
        prop_oneof![
            Just(Body::None),
            Just(Body::Form),
            Just(Body::Multipart),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Body::Raw)
        ],
        pairs(),
    )
        .prop_map(|(method, path, query, body, form)| Req { method, path, query, body, form })
}

async fn send(s: &TestServer, r: &Req) -> reqwest::Response {
    let url = format!("{}/{}", s.url, r.path);
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut req = s.client.request(method, &url).query(&r.query);
    req = match &r.body {
        Body::None => req,
        Body::Form => req.form(&r.form),
        Body::Multipart => {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in &r.form {
                form = form.text(k.clone(), v.clone());
            }
            req.multipart(form)
        }
        Body::Raw(bytes) => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(bytes.clone()),
    };
    req.timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the server answers")
}

/// Every file under `dir`, with the top folders the daemon may write to left out.
fn outside(dir: &Path) -> Vec<String> {
    let allowed = ["eggs", "logs", "items", "dbs", "jobdata"];
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !allowed.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out.sort();
    out
}

async fn check(s: &TestServer, r: &Req) {
    let resp = send(s, r).await;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.bytes().await.unwrap();
    if r.path.starts_with("api/") || r.path.starts_with("storage/") {
        // The Scrapy Cloud API: client errors are statuses; every answer is JSON lines (but
        // the bundle of a project's eggs, a zip).
        assert!(status < 500, "{r:?} → {status}: {body:?}");
        if status == 200 && r.method != "HEAD" && content_type != "application/zip" {
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                serde_json::from_slice::<Value>(line)
                    .unwrap_or_else(|e| panic!("{r:?}: bad JSON line {e}: {body:?}"));
            }
        }
        return;
    }
    assert!(
        matches!(status, 200 | 204 | 206 | 302 | 404 | 405 | 416),
        "{r:?} → {status}"
    );
    if r.method == "HEAD" || status == 204 || status == 302 {
        return;
    }
    if content_type == "application/json" {
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{r:?}: bad JSON {e}: {body:?}"));
        assert!(v["status"] == "ok" || v["status"] == "error", "{r:?}: {v}");
        assert_eq!(v["node_name"], "test-node");
        assert!(body.ends_with(b"\n"));
    } else {
        assert!(
            content_type.starts_with("text/html")
                || content_type.starts_with("text/plain")
                || body.is_empty(),
            "{r:?} → {status} {content_type}"
        );
    }
}

async fn invariants(s: &TestServer) {
    // Launches fail at once here (no interpreter): wait for the launcher to settle.
    support::wait_until_async("no running job", Duration::from_secs(30), || async {
        (s.get("daemonstatus.json", &[]).await["running"] == 0).then_some(())
    })
    .await;
    let status = s.get("daemonstatus.json", &[]).await;
    let jobs = s.get("listjobs.json", &[]).await;
    for key in ["pending", "running", "finished"] {
        assert_eq!(
            status[key].as_u64().unwrap() as usize,
            jobs[key].as_array().unwrap().len(),
            "{key}: {status} {jobs}"
        );
    }
    for entry in jobs["finished"].as_array().unwrap() {
        assert!(entry["outcome"].is_string(), "{entry}");
    }
    assert!(
        outside(s.root()).is_empty(),
        "files outside the folders: {:?}",
        outside(s.root())
    );
}

#[test]
fn random_requests_keep_the_daemon_consistent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap().keep();
        // A known project with a stored spider list: schedulable without Python.
        std::fs::create_dir_all(dir.join("eggs/known")).unwrap();
        std::fs::write(
            dir.join("eggs/known/1.egg"),
            b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        )
        .unwrap();
        std::fs::write(dir.join("eggs/known/1.spiders"), br#"["s1"]"#).unwrap();
        TestServer::start_in(&dir, |c| {
            c.python = "/nonexistent/python3".into();
            c.max_proc = 2;
        })
        .await
    });
    // The daemon works on this project: a job is scheduled, fails to launch, is recorded.
    rt.block_on(async {
        let job = s
            .schedule(&[("project", "known"), ("spider", "s1"), ("jobid", "seed")])
            .await;
        s.wait_state(&job, "finished", Duration::from_secs(30))
            .await;
        assert_eq!(
            s.finished_entry(&job).await.unwrap()["outcome"],
            "launch-failed"
        );
    });
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(requests in proptest::collection::vec(request(), 1..12))| {
        rt.block_on(async {
            for r in &requests {
                check(&s, r).await;
            }
            invariants(&s).await;
        });
    });
    rt.block_on(s.stop());
}
