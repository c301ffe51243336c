//! Collections and Frontiers of the storage API: the real `scrapinghub` client runs every
//! Collections and Frontiers example of its Overview chapter, its API reference methods and the
//! error cases (tests/clients/scrapinghub_collections.py) against the real server; the
//! endpoints the client has no method for (`/value`, `rename`, `DELETE`) are checked over HTTP.

mod support;

use serde_json::{Value, json};
use support::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrapinghub_client_uses_collections_and_frontiers_unchanged() {
    let s = TestServer::start(|_| {}).await;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("1", "r1", &egg).await["status"], "ok");
    let script = support::repo_root().join("tests/clients/scrapinghub_collections.py");
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::run_checked(
            support::venv().command("python").arg(script).arg(&url),
            "scrapinghub_collections.py",
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "ok", "{stdout}");
    s.stop().await;
}

/// The JSON lines of a body.
fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn value_rename_and_delete_endpoints() {
    let s = TestServer::start(|_| {}).await;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(s.add_version("1", "r1", &egg).await["status"], "ok");
    let base = format!("{}/storage/collections/1", s.url);
    let post = |path: String, body: &'static str| s.client.post(path).body(body).send();
    let get = |path: String| s.client.get(path).send();

    let r = post(
        format!("{base}/s/books"),
        "{\"_key\":\"a\",\"value\":\"raw text\"}\n{\"_key\":\"b\",\"value\":{\"n\":1}}\n{\"_key\":\"c\"}",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = get(format!("{base}/s/books/a/value")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "raw text");
    let r = get(format!("{base}/s/books/b/value")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "{\"n\":1}");
    assert_eq!(
        get(format!("{base}/s/books/c/value"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get(format!("{base}/s/books/zz/value"))
            .await
            .unwrap()
            .status(),
        404
    );

    // A bad line anywhere: 400 and nothing of the body stored.
    let r = post(format!("{base}/s/books"), "{\"_key\":\"d\"}\n{\"foo\":42}")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        "Error parsing data, missing value for _key field"
    );
    assert_eq!(
        get(format!("{base}/s/books/d")).await.unwrap().status(),
        404
    );

    // DELETE of one key, then DELETE with scan filters.
    let r = s
        .client
        .delete(format!("{base}/s/books/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(format!("{base}/s/books/a")).await.unwrap().status(),
        404
    );
    let r = s
        .client
        .delete(format!("{base}/s/books?prefix=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get(format!("{base}/s/books?meta=_key&nodata=1"))
        .await
        .unwrap();
    assert_eq!(lines(&r.text().await.unwrap()), [json!({"_key": "c"})]);
    let r = get(format!("{base}/s/books/count")).await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"count": 1, "scanned": 1})
    );

    // rename: every type of the name; 404 for a missing one, 400 for a taken or bad name.
    post(format!("{base}/vs/books"), "{\"_key\":\"v\"}")
        .await
        .unwrap();
    post(format!("{base}/s/other"), "{\"_key\":\"o\"}")
        .await
        .unwrap();
    let rename = |q: &'static str| s.client.post(format!("{base}/rename?{q}")).send();
    assert_eq!(
        rename("name=books&new_name=other").await.unwrap().status(),
        400
    );
    assert_eq!(
        rename("name=books&new_name=bad-name")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        rename("name=nothing&new_name=x").await.unwrap().status(),
        404
    );
    assert_eq!(
        rename("name=books&new_name=novels").await.unwrap().status(),
        200
    );
    let r = get(format!("{base}/list")).await.unwrap();
    assert_eq!(
        lines(&r.text().await.unwrap()),
        [
            json!({"type": "s", "name": "novels"}),
            json!({"type": "vs", "name": "novels"}),
            json!({"type": "s", "name": "other"}),
        ]
    );
    assert_eq!(
        get(format!("{base}/vs/novels/v")).await.unwrap().status(),
        200
    );

    // delete?name=: 202 and every type gone.
    let r = s
        .client
        .post(format!("{base}/delete?name=novels"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "success", "deleted": "novels"})
    );
    let r = get(format!("{base}/list")).await.unwrap();
    assert_eq!(
        lines(&r.text().await.unwrap()),
        [json!({"type": "s", "name": "other"})]
    );

    // Bad paths and an unknown project.
    assert_eq!(get(format!("{base}/x/books")).await.unwrap().status(), 400);
    assert_eq!(
        get(format!("{}/storage/collections/77/s/books", s.url))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get(format!("{}/storage/hcf/77/list", s.url))
            .await
            .unwrap()
            .status(),
        404
    );
    let r = s
        .client
        .post(format!("{}/storage/hcf/1/f/s/a", s.url))
        .body("{\"fp\":\"x\",\"p\":\"high\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = get(format!("{}/storage/hcf/1/list", s.url)).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "[]\n");
    s.stop().await;
}
