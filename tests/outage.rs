//! Two real nodes (the binary) on one real PostgreSQL database that is stopped and started again
//! while they run: the requests made meanwhile are answered with an error (not left hanging),
//! the crawls keep running, a crawl that ends meanwhile has its end recorded once the database
//! is back, and every job acknowledged before the outage runs once.
//!
//! A binary of its own: it stops the test binary's PostgreSQL server, which no other test may
//! be using meanwhile.

mod support;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use support::daemon::Daemon;

const LONG: Duration = Duration::from_secs(90);

/// A node's configuration: the shared database, one slot, and a `node_timeout` far longer than
/// the outage, so that no node is declared dead because of it.
fn node_conf(url: &str, name: &str) -> String {
    format!(
        "database_url = {url}\nnode_name = {name}\nnode_timeout = 30\nmax_proc = 1\n\
         finished_to_keep = 1000\njobs_to_keep = 0\n"
    )
}

fn ids(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether process `pid` exists (a zombie not yet reaped by its daemon counts).
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// A GET made while the database is down: answered (the client gives up after a minute, which
/// fails the test), with Scrapyd's error envelope naming the database.
fn assert_database_error(what: &str, body: std::io::Result<String>) {
    let body = body.unwrap_or_else(|e| panic!("{what}: no answer while the database is down: {e}"));
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert_eq!(v["status"], "error", "{what}: {v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains("database"),
        "{what}: the message does not mention the database: {v}"
    );
}

#[test]
fn postgresql_stopped_and_started_while_nodes_run_loses_nothing_acknowledged() {
    let url = support::postgres::database();
    let server = support::postgres::server();
    let nodes: Vec<(tempfile::TempDir, Daemon)> = (0..2)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let d = Daemon::start(dir.path(), &node_conf(&url, &format!("n{i}")));
            (dir, d)
        })
        .collect();
    let d = |i: usize| &nodes[i].1;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(support::upload_egg(&d(0).url, "p", "1", egg)["spiders"], 4);

    // A long crawl on each node: `during` ends while the database is down, `across` after.
    let release = tempfile::tempdir().unwrap();
    let until = |name: &str| release.path().join(name).display().to_string();
    for (i, job) in ["during", "across"].iter().enumerate() {
        let v = d(i).post(
            "schedule.json",
            &format!(
                "project=p&spider=slow&jobid={job}&until_file={}",
                until(job)
            ),
        );
        assert_eq!(v["status"], "ok", "{v}");
    }
    let running = support::wait_until("a slow crawl on each node", LONG, || {
        let v = d(0).get("listjobs.json");
        let running = v["running"].as_array().unwrap().clone();
        (running.len() == 2 && running.iter().all(|e| e["pid"].as_u64().is_some()))
            .then_some(running)
    });
    let crawl = |job: &str| {
        let e = running.iter().find(|e| e["id"] == job).unwrap();
        let node: usize = e["node"].as_str().unwrap()[1..].parse().unwrap();
        (node, e["pid"].as_i64().unwrap() as i32)
    };
    let (during_node, during_pid) = crawl("during");
    let (across_node, across_pid) = crawl("across");
    assert_ne!(during_node, across_node, "{running:?}");
    for (job, node) in [("during", during_node), ("across", across_node)] {
        let log = nodes[node].0.path().join(format!("logs/p/slow/{job}.log"));
        support::wait_until(&format!("the crawl {job} logging"), LONG, || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("slow spider: first tick")
                .then_some(())
        });
    }
    // Jobs acknowledged before the outage, waiting in the queue (every slot is taken).
    let mut acknowledged: BTreeSet<String> = ["during", "across"].map(String::from).into();
    for i in 0..4 {
        let v = d(i % 2).post(
            "schedule.json",
            &format!("project=p&spider=echo&jobid=echo{i}"),
        );
        assert_eq!(v["status"], "ok", "{v}");
        acknowledged.insert(format!("echo{i}"));
    }
    assert_eq!(ids(&d(1).get("listjobs.json")["pending"]).len(), 4);

    server.stop();

    // Requests are answered, with an error, however long the database stays down.
    for i in 0..2 {
        assert_database_error(
            &format!("listjobs.json through n{i}"),
            support::daemon::http_get(&format!("{}/listjobs.json", d(i).url)),
        );
        assert_database_error(
            &format!("schedule.json through n{i}"),
            support::daemon::http_post(
                &format!("{}/schedule.json", d(i).url),
                &format!("project=p&spider=echo&jobid=refused{i}"),
            ),
        );
    }
    // Both nodes find that they cannot reach the database...
    for (i, (_, node)) in nodes.iter().enumerate() {
        support::wait_until(&format!("n{i} missing a heartbeat"), LONG, || {
            std::fs::read_to_string(&node.log)
                .ok()?
                .contains("cannot beat the heartbeat")
                .then_some(())
        });
    }
    // ... and their crawls go on.
    assert!(alive(during_pid), "the crawl `during` was stopped");
    assert!(alive(across_pid), "the crawl `across` was stopped");

    // A crawl ends while the database is down: its end waits to be recorded.
    std::fs::write(until("during"), "").unwrap();
    support::wait_until("the crawl `during` exited", LONG, || {
        (!alive(during_pid)).then_some(())
    });
    let during_log = &nodes[during_node].1.log;
    support::wait_until("its end kept to be recorded later", LONG, || {
        std::fs::read_to_string(during_log)
            .ok()?
            .contains("cannot record the end of job row")
            .then_some(())
    });
    assert!(
        !server.is_running(),
        "the database came back too early for the test"
    );
    assert!(alive(across_pid), "the crawl `across` was stopped");

    server.start();

    let status = support::wait_until("the end of `during` recorded", LONG, || {
        let v = d(across_node).get("status.json?job=during");
        (v["currstate"] == "finished").then_some(v)
    });
    assert_eq!(status["outcome"], "finished", "{status}");
    assert_eq!(status["node"], format!("n{during_node}"), "{status}");
    // The crawl that ran through the outage is still running, and ends when it is told to.
    let v = d(during_node).get("status.json?job=across");
    assert_eq!(v["currstate"], "running", "{v}");
    assert!(alive(across_pid), "the crawl `across` was stopped");
    std::fs::write(until("across"), "").unwrap();

    support::wait_until("every acknowledged job finished", LONG, || {
        let v = d(0).get("listjobs.json");
        let finished: BTreeSet<String> = ids(&v["finished"]).into_iter().collect();
        acknowledged.is_subset(&finished).then_some(())
    });
    for (i, (_, node)) in nodes.iter().enumerate() {
        let v = node.get("listjobs.json");
        assert_eq!(v["status"], "ok", "n{i}: {v}");
        assert!(v["pending"].as_array().unwrap().is_empty(), "n{i}: {v}");
        assert!(v["running"].as_array().unwrap().is_empty(), "n{i}: {v}");
        let listed = ids(&v["finished"]);
        let once: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(listed.len(), once.len(), "n{i} lists a job twice: {v}");
        // Nothing acknowledged is missing, and what was refused was not run.
        assert_eq!(once, acknowledged, "n{i}: {v}");
        for e in v["finished"].as_array().unwrap() {
            assert_eq!(e["outcome"], "finished", "n{i}: {e}");
        }
    }
    // Each job ran once: one log file across the two nodes' folders; the refused ones none.
    for job in acknowledged
        .iter()
        .map(String::as_str)
        .chain(["refused0", "refused1"])
    {
        let logs: Vec<PathBuf> = nodes
            .iter()
            .flat_map(|(dir, _)| support::daemon::log_files(dir.path(), job))
            .collect();
        let expected = usize::from(acknowledged.contains(job));
        assert_eq!(logs.len(), expected, "{job}: {logs:?}");
    }
    // Neither node was declared dead over the outage.
    let listed = d(1).get("listnodes.json");
    for n in listed["nodes"].as_array().unwrap() {
        assert_eq!(n["alive"], true, "{listed}");
    }
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 2, "{listed}");
}
