//! The webservices against the real in-process server: the envelope, methods, OPTIONS, auth,
//! and every endpoint's bad inputs (missing parameters, unknown names, traversal names, invalid
//! UTF-8, invalid numbers, non-zip eggs). Each bad input must give a clear error and change
//! nothing.

mod support;

use serde_json::{Value, json};
use support::server::TestServer;

/// The answer without `node_name` (which must be there).
fn strip(mut v: Value) -> Value {
    assert_eq!(v["node_name"], "test-node", "node_name in {v}");
    v.as_object_mut().unwrap().remove("node_name");
    v
}

fn error(message: &str) -> Value {
    json!({"status": "error", "message": message})
}

/// Lists every file under `dir`, recursively.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() {
                out.extend(tree(&p));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_is_scrapyds_byte_for_byte() {
    let s = TestServer::start(|_| {}).await;
    let r = s.get_raw("daemonstatus.json", &[]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-methods"], "OPTIONS, HEAD, GET");
    assert_eq!(h["access-control-allow-headers"], "X-Requested-With");
    let body = r.text().await.unwrap();
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    assert_eq!(
        body,
        "{\"pending\": 0, \"running\": 0, \"finished\": 0, \"status\": \"ok\", \"node_name\": \"test-node\"}\n"
    );

    let r = s.get_raw("listprojects.json", &[("x", "ñ")]).await;
    assert_eq!(
        r.text().await.unwrap(),
        "{\"projects\": [], \"status\": \"ok\", \"node_name\": \"test-node\"}\n"
    );
    let r = s.get_raw("listversions.json", &[("project", "ñ")]).await;
    assert_eq!(
        r.text().await.unwrap(),
        "{\"versions\": [], \"status\": \"ok\", \"node_name\": \"test-node\"}\n"
    );
    // Errors are HTTP 200 too, with the same envelope; non-ASCII is escaped as Python does.
    let r = s.get_raw("listspiders.json", &[("project", "ñ")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "{\"status\": \"error\", \"message\": \"project '\\u00f1' not found\", \"node_name\": \"test-node\"}\n"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_daemon_answers_like_a_fresh_scrapyd() {
    let s = TestServer::start(|_| {}).await;
    assert_eq!(
        strip(s.get("listprojects.json", &[]).await),
        json!({"projects": [], "status": "ok"})
    );
    assert_eq!(
        strip(s.get("listversions.json", &[("project", "sample")]).await),
        json!({"versions": [], "status": "ok"})
    );
    assert_eq!(
        strip(s.get("listjobs.json", &[]).await),
        json!({"pending": [], "running": [], "finished": [], "status": "ok"})
    );
    assert_eq!(
        strip(s.get("status.json", &[("job", "sample")]).await),
        json!({"currstate": null, "status": "ok"})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_parameters_are_named_in_check_order() {
    let s = TestServer::start(|_| {}).await;
    type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("addversion.json", true, &[], "project"),
        ("addversion.json", true, &[("version", "1")], "project"),
        ("addversion.json", true, &[("project", "p")], "version"),
        (
            "addversion.json",
            true,
            &[("project", "p"), ("version", "1")],
            "egg",
        ),
        ("schedule.json", true, &[], "project"),
        ("schedule.json", true, &[("project", "p")], "spider"),
        ("cancel.json", true, &[("project", "p")], "job"),
        ("cancel.json", true, &[("job", "j")], "project"),
        ("delversion.json", true, &[("project", "p")], "version"),
        ("delversion.json", true, &[("version", "v")], "project"),
        ("delproject.json", true, &[], "project"),
        ("status.json", false, &[("project", "p")], "job"),
        ("listversions.json", false, &[], "project"),
        ("listspiders.json", false, &[], "project"),
    ];
    for (path, post, form, missing) in cases {
        let v = if *post {
            s.post(path, form).await
        } else {
            s.get(path, form).await
        };
        assert_eq!(
            strip(v),
            error(&format!("'{missing}' parameter is required")),
            "{path} {form:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_projects_versions_and_jobs() {
    let s = TestServer::start(|_| {}).await;
    for project in ["nonexistent", "../p", "."] {
        let msg = format!("project '{project}' not found");
        let cases = [
            s.post("schedule.json", &[("project", project), ("spider", "s")])
                .await,
            s.post("cancel.json", &[("project", project), ("job", "j")])
                .await,
            s.get("status.json", &[("project", project), ("job", "j")])
                .await,
            s.get("listspiders.json", &[("project", project)]).await,
            s.get("listjobs.json", &[("project", project)]).await,
        ];
        for v in cases {
            assert_eq!(strip(v), error(&msg));
        }
    }
    assert_eq!(
        strip(
            s.post(
                "delversion.json",
                &[("project", "sample"), ("version", "nonexistent")]
            )
            .await
        ),
        error("version 'nonexistent' not found")
    );
    assert_eq!(
        strip(
            s.post("delproject.json", &[("project", "nonexistent")])
                .await
        ),
        error("project 'nonexistent' not found")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_names_touch_nothing() {
    let s = TestServer::start(|_| {}).await;
    let before = tree(s.root());
    let egg = support::build_egg(&support::test_project_dir());
    for project in [
        "../p", "..", ".", "", "x/..", "a/b", "/abs", "a\\b", "a\0b", "a\nb",
    ] {
        let expect = error(&format!("DirectoryTraversalError: {project}"));
        let form = reqwest::multipart::Form::new()
            .text("project", project.to_owned())
            .text("version", "v")
            .part(
                "egg",
                reqwest::multipart::Part::bytes(egg.clone()).file_name("p.egg"),
            );
        let v: Value = s
            .client
            .post(format!("{}/addversion.json", s.url))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(strip(v), expect, "addversion {project:?}");
        assert_eq!(
            strip(s.get("listversions.json", &[("project", project)]).await),
            expect
        );
        assert_eq!(
            strip(
                s.post("delversion.json", &[("project", project), ("version", "v")])
                    .await
            ),
            expect
        );
        assert_eq!(
            strip(s.post("delproject.json", &[("project", project)]).await),
            expect
        );
    }
    // The egg may also arrive as a urlencoded field (Scrapyd's integration test sends it so).
    let form = reqwest::Client::new()
        .post(format!("{}/addversion.json", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "project=..%2Fp&version=v&egg={}",
            egg.iter().map(|b| format!("%{b:02X}")).collect::<String>()
        ));
    let v: Value = form.send().await.unwrap().json().await.unwrap();
    assert_eq!(strip(v), error("DirectoryTraversalError: ../p"));
    // A version that is not a plain name is refused too.
    let v = s.add_version("p", "../x", &egg).await;
    assert_eq!(strip(v), error("DirectoryTraversalError: ../x"));
    assert_eq!(tree(s.root()), before, "nothing was written");
    assert_eq!(
        strip(s.get("listprojects.json", &[]).await),
        json!({"projects": [], "status": "ok"})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_options() {
    let s = TestServer::start(|_| {}).await;
    let get_only = [
        "daemonstatus.json",
        "listprojects.json",
        "listversions.json",
        "listspiders.json",
        "listjobs.json",
        "status.json",
    ];
    let post_only = [
        "addversion.json",
        "schedule.json",
        "cancel.json",
        "delversion.json",
        "delproject.json",
    ];
    for path in get_only {
        let url = format!("{}/{path}", s.url);
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = s.client.request(method.clone(), &url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{method} {path}");
            assert_eq!(
                strip(r.json().await.unwrap()),
                error("UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'GET']")
            );
        }
        let r = s
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["allow"], "OPTIONS, HEAD, GET");
        assert_eq!(
            r.headers()["access-control-allow-methods"],
            "OPTIONS, HEAD, GET"
        );
        // hyper never sends Content-Length on a 204 (RFC 9110 §8.6); Scrapyd sends `0`.
        assert!(r.bytes().await.unwrap().is_empty());
        let r = s.client.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for path in post_only {
        let url = format!("{}/{path}", s.url);
        let r = s.client.get(&url).send().await.unwrap();
        assert_eq!(
            strip(r.json().await.unwrap()),
            error("UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'POST']")
        );
        let r = s
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["allow"], "OPTIONS, HEAD, POST");
    }
    // Paths match exactly, as in Scrapyd.
    for path in [
        "daemonstatus.json/",
        "DAEMONSTATUS.json",
        "nothing.json",
        "jobs/",
    ] {
        let r = s
            .client
            .get(format!("{}/{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_are_reported_by_name() {
    let s = TestServer::start(|_| {}).await;
    let raw = |path: &str, body: &'static str| {
        s.client
            .post(format!("{}/{path}", s.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let v: Value = raw("schedule.json", "project=%FF&spider=s")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        strip(v),
        error(
            "project is invalid: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
        )
    );
    let v: Value = raw("schedule.json", "project=p&spider=s&priority=x")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        strip(v),
        error("priority is invalid: could not convert string to float: b'x'")
    );
    let v: Value = raw("schedule.json", "project=p&spider=s&setting=NOEQUALS")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        strip(v),
        error("setting is invalid: expected NAME=value, got 'NOEQUALS'")
    );
    let v: Value = raw("cancel.json", "project=p&job=j&signal=%C3")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        strip(v)["message"]
            .as_str()
            .unwrap()
            .starts_with("signal is invalid: 'utf-8' codec")
    );
    let r = s
        .client
        .get(format!("{}/listversions.json?project=%C3%28", s.url))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        strip(v),
        error(
            "project is invalid: 'utf-8' codec can't decode byte 0xc3 in position 0: invalid continuation byte"
        )
    );
    // A JSON body is not a parameter source (as in Scrapyd).
    let r = s
        .client
        .post(format!("{}/schedule.json", s.url))
        .json(&json!({"project": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        strip(r.json().await.unwrap()),
        error("'project' parameter is required")
    );
    // Body values replace query values.
    let r = s
        .client
        .post(format!("{}/delproject.json?project=fromquery", s.url))
        .form(&[("project", "frombody")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        strip(r.json().await.unwrap()),
        error("project 'frombody' not found")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_zip_eggs_are_refused_and_nothing_is_stored() {
    let s = TestServer::start(|_| {}).await;
    let before = tree(s.root());
    let v = s.add_version("p", "1", b"definitely not a zip").await;
    assert_eq!(
        strip(v),
        error("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")
    );
    let v = s
        .post(
            "addversion.json",
            &[
                ("project", "p"),
                ("version", "1"),
                ("egg", "path/to/file.egg"),
            ],
        )
        .await;
    assert_eq!(
        strip(v),
        error("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")
    );
    assert_eq!(tree(s.root()), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_the_whole_site() {
    let s = TestServer::start(|c| {
        c.username = "hello12345".into();
        c.password = "67890world".into();
    })
    .await;
    for path in ["daemonstatus.json", "", "jobs", "logs/", "nothing"] {
        let url = format!("{}/{path}", s.url);
        for auth in [
            None,
            Some(("baduser", "badpass")),
            Some(("hello12345", "67890worl")),
        ] {
            let mut req = s.client.get(&url);
            if let Some((u, p)) = auth {
                req = req.basic_auth(u, Some(p));
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "basic realm=\"Scrapyd\"");
            assert_eq!(r.text().await.unwrap(), "Unauthorized");
        }
    }
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/schedule.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(strip(s.get("daemonstatus.json", &[]).await)["status"], "ok");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_can_be_removed_and_aliased() {
    use scrapyd_rs::config::Service;
    let s = TestServer::start(|c| {
        c.services.retain(|(name, _)| name != "daemonstatus.json");
        c.services
            .push(("hello.json".into(), Service::ListProjects));
    })
    .await;
    assert_eq!(s.get_raw("daemonstatus.json", &[]).await.status(), 404);
    assert_eq!(
        strip(s.get("hello.json", &[]).await),
        json!({"projects": [], "status": "ok"})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_file_trees() {
    let s = TestServer::start(|_| {}).await;
    let home = s.get_raw("", &[]).await;
    assert_eq!(home.headers()["content-type"], "text/html; charset=utf-8");
    let text = home.text().await.unwrap();
    assert!(
        text.contains("\"/jobs\"") && text.contains("\"/logs/\"") && text.contains("use the API"),
        "{text}"
    );
    let r = s
        .client
        .get(format!("{}/", s.url))
        .header("X-Forwarded-Prefix", "/path/to")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("\"/path/to/jobs\"") && text.contains("\"/path/to/logs/\""));
    let jobs = s.get_raw("jobs", &[]).await.text().await.unwrap();
    assert!(jobs.contains("Pending") && jobs.contains("Finished"));
    // /logs redirects to /logs/, which lists the folder.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("{}/logs", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/logs/");
    std::fs::create_dir_all(s.root().join("logs/p/s")).unwrap();
    std::fs::write(s.root().join("logs/p/s/j.log"), "hello log\n").unwrap();
    std::fs::write(s.root().join("secret.txt"), "outside").unwrap();
    let listing = s.get_raw("logs/", &[]).await.text().await.unwrap();
    assert!(
        listing.contains("Last modified") && listing.contains("p/"),
        "{listing}"
    );
    // `+` in a path is a plus (job ids such as 2024-01-01T00:00+00:00).
    std::fs::write(s.root().join("logs/p/s/a+b.log"), "plus\n").unwrap();
    let r = s.get_raw("logs/p/s/a+b.log", &[]).await;
    assert_eq!(r.text().await.unwrap(), "plus\n");
    let r = s.get_raw("logs/p/s/j.log", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "hello log\n");
    let r = s
        .client
        .get(format!("{}/logs/p/s/j.log", s.url))
        .header("range", "bytes=0-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "hello");
    for bad in [
        "logs/../secret.txt",
        "logs/%2e%2e/secret.txt",
        "logs/p/s/%2e%2e%2f%2e%2e%2f..%2fsecret.txt",
        "logs/p/s/nothing.log",
    ] {
        let r = no_redirect
            .get(format!("{}/{bad}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_stores_nothing() {
    let s = TestServer::start(|_| {}).await;
    let egg = support::build_egg(&support::test_project_dir());
    let before = tree(s.root());
    let form = reqwest::multipart::Form::new()
        .text("project", "abandoned")
        .text("version", "1")
        .part(
            "egg",
            reqwest::multipart::Part::bytes(egg).file_name("p.egg"),
        );
    // The client gives up long before `scrapy list` (a Python start-up) can finish.
    let r = s
        .client
        .post(format!("{}/addversion.json", s.url))
        .multipart(form)
        .timeout(std::time::Duration::from_millis(150))
        .send()
        .await;
    assert!(r.is_err(), "the upload should have been abandoned: {r:?}");
    support::wait_until_async(
        "the upload to be cleaned up",
        std::time::Duration::from_secs(30),
        || async { (tree(s.root()) == before).then_some(()) },
    )
    .await;
    assert_eq!(
        strip(s.get("listprojects.json", &[]).await),
        json!({"projects": [], "status": "ok"})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_give_clear_errors_and_change_nothing() {
    let s = TestServer::start(|c| c.max_upload_size = 100_000).await;
    let before = tree(s.root());
    let big = vec![0u8; 300_000];
    let v = s.add_version("p", "1", &big).await;
    assert_eq!(
        strip(v),
        error("request body is too large (max_upload_size = 100000 bytes)")
    );
    let body = format!("project=p&version=1&egg={}", "x".repeat(150_000));
    let r = s
        .client
        .post(format!("{}/addversion.json", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        strip(r.json().await.unwrap()),
        error("request body is too large (max_upload_size = 100000 bytes)")
    );
    // Too many parameters.
    let query: Vec<(String, String)> = (0..1001)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let r = s
        .client
        .get(format!("{}/listjobs.json", s.url))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(
        strip(r.json().await.unwrap()),
        error("too many parameters: 1001 (at most 1000)")
    );
    // A spider argument too long for a command line (checked before anything else).
    let long = "a".repeat(70_000);
    let r = s
        .client
        .post(format!("{}/schedule.json", s.url))
        .form(&[("project", "p"), ("spider", "s"), ("arg", long.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        strip(r.json().await.unwrap()),
        error("spider argument 'arg' is too long: 70004 bytes (at most 65536)")
    );
    // Names longer than 200 bytes.
    let v = s
        .get("listversions.json", &[("project", &"n".repeat(201))])
        .await;
    assert_eq!(strip(v), error("name too long: 201 bytes (at most 200)"));
    assert_eq!(tree(s.root()), before);
    s.stop().await;
}

/// Every endpoint, every name parameter, hostile names: nothing is written anywhere (the folders
/// sit two levels deep, so an escape of one or two levels would show in the tree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_names_on_every_endpoint_touch_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let s = TestServer::start_in(&deep, |c| {
        c.items_dir = scrapyd_rs::config::ItemsDir::Local(deep.join("items"))
    })
    .await;
    let egg = support::build_egg(&support::test_project_dir());
    let names = [
        "..",
        ".",
        "",
        "a/../..",
        "../..",
        "../../secret.txt",
        "/etc",
        "/tmp/x",
        "x\0y",
        "%2e%2e",
        "..%2f..",
        "\u{2024}\u{2024}",
        "\u{ff0e}\u{ff0e}",
        "..\\..",
        "x/",
        "\n",
        "~",
        "../../a",
    ];
    // Everything except what lies inside the configured folders.
    let outside = |root: &std::path::Path| -> Vec<String> {
        let inside: Vec<String> = ["eggs", "logs", "items", "dbs"]
            .iter()
            .map(|f| format!("{}/", deep.join(f).display()))
            .collect();
        tree(root)
            .into_iter()
            .filter(|p| !inside.iter().any(|i| p.starts_with(i.as_str())))
            .collect()
    };
    let before = outside(dir.path());
    for name in names {
        for (path, post, params) in [
            (
                "addversion.json",
                true,
                vec![("project", name), ("version", "1")],
            ),
            (
                "addversion.json",
                true,
                vec![("project", "p"), ("version", name)],
            ),
            (
                "schedule.json",
                true,
                vec![("project", name), ("spider", "s")],
            ),
            (
                "schedule.json",
                true,
                vec![("project", "p"), ("spider", name)],
            ),
            (
                "schedule.json",
                true,
                vec![("project", "p"), ("spider", "s"), ("jobid", name)],
            ),
            (
                "schedule.json",
                true,
                vec![("project", "p"), ("spider", "s"), ("_version", name)],
            ),
            ("cancel.json", true, vec![("project", name), ("job", name)]),
            (
                "delversion.json",
                true,
                vec![("project", name), ("version", "1")],
            ),
            (
                "delversion.json",
                true,
                vec![("project", "p"), ("version", name)],
            ),
            ("delproject.json", true, vec![("project", name)]),
            ("status.json", false, vec![("job", name), ("project", name)]),
            ("listversions.json", false, vec![("project", name)]),
            ("listspiders.json", false, vec![("project", name)]),
            (
                "listspiders.json",
                false,
                vec![("project", "p"), ("_version", name)],
            ),
            ("listjobs.json", false, vec![("project", name)]),
        ] {
            let v: Value = if path == "addversion.json" {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in &params {
                    form = form.text(k.to_string(), v.to_string());
                }
                form = form.part(
                    "egg",
                    reqwest::multipart::Part::bytes(egg.clone()).file_name("p.egg"),
                );
                s.client
                    .post(format!("{}/{path}", s.url))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            } else if post {
                s.post(path, &params).await
            } else {
                s.get(path, &params).await
            };
            // A name that is not a plain name is refused. (Names such as `%2e%2e` or
            // `\u{2024}\u{2024}` are plain names: stored as such inside eggs_dir.)
            if !scrapyd_rs::names::is_safe(name) {
                assert_eq!(v["status"], "error", "{path} {params:?}: {v}");
            }
        }
        for page in ["logs", "items"] {
            let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
            let r = s
                .client
                .get(format!("{}/{page}/{encoded}", s.url))
                .send()
                .await
                .unwrap();
            // (The client itself folds `%2E%2E` into `..` and then into `/{page}/`.)
            assert!(
                r.status() == 404 || r.status() == 200,
                "{page}/{name:?}: {}",
                r.status()
            );
            assert!(
                !r.text().await.unwrap().contains("secret"),
                "{page}/{name:?}"
            );
        }
    }
    assert_eq!(
        outside(dir.path()),
        before,
        "something was written outside the folders"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret.txt")).unwrap(),
        "secret"
    );
    // What was stored are plain names, directly inside eggs_dir.
    for project in std::fs::read_dir(deep.join("eggs")).unwrap().flatten() {
        assert!(scrapyd_rs::names::is_safe(
            &project.file_name().to_string_lossy()
        ));
    }
    s.stop().await;
}

/// Environment faults: an interpreter that does not exist, one that dies at once. Each gives a
/// clear error or a recorded job, frees the slot, and leaves earlier data intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_dying_interpreter_gives_clear_errors_and_frees_slots() {
    for (python, outcome) in [
        ("/nonexistent/python3", "launch-failed"),
        ("/bin/false", "failed"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // A project stored earlier, with its spider list: schedulable without running Python.
        support::store_listed_egg(dir.path(), "old");
        let s = TestServer::start_in(dir.path(), |c| {
            c.python = python.into();
            c.max_proc = 1;
        })
        .await;
        let v = s
            .add_version(
                "new",
                "1",
                &support::build_egg(&support::test_project_dir()),
            )
            .await;
        assert!(
            v["message"].as_str().unwrap().starts_with("RunnerError: "),
            "{python}: {v}"
        );
        assert!(!dir.path().join("eggs/new").exists());
        let mut jobs = Vec::new();
        for _ in 0..3 {
            jobs.push(s.schedule(&[("project", "old"), ("spider", "s1")]).await);
        }
        for job in &jobs {
            s.wait_state(job, "finished", std::time::Duration::from_secs(30))
                .await;
            assert_eq!(
                s.finished_entry(job).await.unwrap()["outcome"],
                outcome,
                "{python}"
            );
        }
        assert_eq!(strip(s.get("daemonstatus.json", &[]).await)["running"], 0);
        assert_eq!(
            strip(s.get("listversions.json", &[("project", "old")]).await)["versions"],
            json!(["1"])
        );
        s.stop().await;
    }
}

/// `listnodes.json` on a single node (SQLite): this node alone, alive, with its slots; POST is
/// refused as for any GET webservice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listnodes_lists_this_node_alone_on_sqlite() {
    let s = TestServer::start(|_| {}).await;
    let v = strip(s.get("listnodes.json", &[]).await);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(
        (
            &nodes[0]["name"],
            &nodes[0]["alive"],
            &nodes[0]["running"],
            &nodes[0]["max_proc"]
        ),
        (&json!("test-node"), &json!(true), &json!(0), &json!(2))
    );
    assert_eq!(v["status"], "ok");
    let refused = s.post("listnodes.json", &[]).await;
    assert_eq!(refused["status"], "error", "{refused}");
    s.stop().await;
}
