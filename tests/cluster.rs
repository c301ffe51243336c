//! Several real nodes (the binary) on loopback ports sharing one real PostgreSQL database: one
//! queue, eggs uploaded to one node run on another, each job runs once on one node within its
//! `max_proc`, every node lists the same jobs, and a node lost with its crawls has its jobs
//! recorded `lost` while the queue carries on.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use support::daemon::Daemon;

const LONG: Duration = Duration::from_secs(90);

/// A node's configuration: the shared database, its name, one slot, a short `node_timeout`.
fn node_conf(url: &str, name: &str) -> String {
    format!("database_url = {url}\nnode_name = {name}\nnode_timeout = 3\nmax_proc = 1\n")
}

/// `n` nodes, each in a folder of its own.
fn start_nodes(url: &str, n: usize) -> Vec<(tempfile::TempDir, Daemon)> {
    (0..n)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let d = Daemon::start(dir.path(), &node_conf(url, &format!("n{i}")));
            (dir, d)
        })
        .collect()
}

fn ids(entries: &Value) -> BTreeSet<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_nodes_share_one_queue_and_run_each_job_once() {
    let url = support::postgres::database();
    let nodes = start_nodes(&url, 3);
    let d = |i: usize| &nodes[i].1;
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(support::upload_egg(&d(0).url, "p", "1", egg)["spiders"], 4);
    // Uploaded to one node, known to all.
    for i in 0..3 {
        assert_eq!(
            d(i).get("listprojects.json")["projects"],
            serde_json::json!(["p"])
        );
        assert_eq!(
            d(i).get("listspiders.json?project=p")["spiders"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
    // Three long crawls through three nodes: one slot each, so one runs on each node.
    let release = tempfile::tempdir().unwrap();
    let until = release.path().join("go");
    let until = until.display().to_string();
    let mut jobs = Vec::new();
    for i in 0..3 {
        let v = d(i).post(
            "schedule.json",
            &format!("project=p&spider=slow&jobid=slow{i}&until_file={until}"),
        );
        assert_eq!(v["status"], "ok", "{v}");
        jobs.push(format!("slow{i}"));
    }
    let running = support::wait_until("a slow crawl on each node", LONG, || {
        let v = d(1).get("listjobs.json");
        (v["running"].as_array().unwrap().len() == 3).then_some(v["running"].clone())
    });
    let on: BTreeSet<&str> = running
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].as_str().unwrap())
        .collect();
    assert_eq!(on, BTreeSet::from(["n0", "n1", "n2"]), "{running}");
    // Three more wait in the one queue, whichever node is asked.
    for i in 0..3 {
        let v = d(2 - i).post(
            "schedule.json",
            &format!("project=p&spider=echo&jobid=echo{i}"),
        );
        assert_eq!(v["status"], "ok", "{v}");
        jobs.push(format!("echo{i}"));
    }
    for i in 0..3 {
        let status = d(i).get("daemonstatus.json");
        assert_eq!(
            (status["pending"].as_u64(), status["running"].as_u64()),
            (Some(3), Some(1)),
            "the shared queue, and this node's crawl: {status}"
        );
        assert_eq!(ids(&d(i).get("listjobs.json")["pending"]).len(), 3);
    }
    // A cancel through a node that does not run the crawl reaches the one that does.
    let on_n2 = running
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"] == "n2")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = nodes[2].0.path().join(format!("logs/p/slow/{on_n2}.log"));
    support::wait_until("the crawl on n2 logging", LONG, || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("slow spider: first tick")
            .then_some(())
    });
    let v = d(0).post("cancel.json", &format!("project=p&job={on_n2}"));
    assert_eq!(v["prevstate"], "running", "{v}");
    let cancelled = support::wait_until("the cancelled crawl finished", LONG, || {
        let v = d(1).get(&format!("status.json?job={on_n2}"));
        (v["currstate"] == "finished").then_some(v)
    });
    assert_eq!(cancelled["outcome"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["node"], "n2", "{cancelled}");
    std::fs::write(release.path().join("go"), "").unwrap();
    support::wait_until("every job finished", LONG, || {
        let v = d(0).get("listjobs.json");
        (ids(&v["finished"]).len() == 6).then_some(())
    });
    // Every node lists the same jobs, each with the node that ran it.
    let expected: BTreeSet<String> = jobs.iter().cloned().collect();
    for i in 0..3 {
        let v = d(i).get("listjobs.json");
        assert_eq!(ids(&v["finished"]), expected);
        assert!(v["pending"].as_array().unwrap().is_empty());
        for e in v["finished"].as_array().unwrap() {
            assert!(
                ["n0", "n1", "n2"].contains(&e["node"].as_str().unwrap()),
                "{e}"
            );
            let outcome = if e["id"] == on_n2.as_str() {
                "cancelled"
            } else {
                "finished"
            };
            assert_eq!(e["outcome"], outcome, "{e}");
        }
    }
    // A log is read through a node that did not run its job.
    let (owner, other) = if nodes[0].0.path().join("logs/p/echo/echo0.log").is_file() {
        (0, 1)
    } else {
        let owner = (1..3)
            .find(|&i| nodes[i].0.path().join("logs/p/echo/echo0.log").is_file())
            .expect("one node has the log of echo0");
        (owner, 0)
    };
    let direct =
        std::fs::read_to_string(nodes[owner].0.path().join("logs/p/echo/echo0.log")).unwrap();
    let through =
        support::daemon::http_get(&format!("{}/logs/p/echo/echo0.log", d(other).url)).unwrap();
    assert_eq!(through, direct, "the log of echo0 read through n{other}");
    // So are its Scrapy Cloud items (project `p` has the first allocated id; echo0 is the first
    // job of spider `echo`).
    let spider =
        support::daemon::http_get(&format!("{}/storage/ids/1000000000/spider/echo", d(0).url))
            .unwrap();
    let items = format!("/storage/items/1000000000/{}/1", spider.trim());
    let direct = support::daemon::http_get(&format!("{}{items}", d(owner).url)).unwrap();
    let through = support::daemon::http_get(&format!("{}{items}", d(other).url)).unwrap();
    assert!(direct.contains("\"pid\""), "echo0's item: {direct}");
    assert_eq!(through, direct, "the items of echo0 read through n{other}");
    // Each job ran once: one log file across the three nodes' folders.
    for job in &jobs {
        let logs: Vec<PathBuf> = nodes
            .iter()
            .flat_map(|(dir, _)| support::daemon::log_files(dir.path(), job))
            .collect();
        assert_eq!(logs.len(), 1, "{job}: {logs:?}");
    }
    let listed = d(2).get("listnodes.json");
    let names: Vec<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n0", "n1", "n2"], "{listed}");
    assert!(
        listed["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["alive"] == true)
    );
}

/// A machine lost: a node killed with `kill -9` together with its crawl. After `node_timeout`
/// another node records that crawl's job `lost` (not run again), the queue carries on, and the
/// node, started again, rejoins.
#[test]
fn a_node_lost_with_its_crawls_has_its_jobs_recorded_lost_and_the_queue_carries_on() {
    let url = support::postgres::database();
    let mut nodes = start_nodes(&url, 2);
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(
        support::upload_egg(&nodes[0].1.url, "p", "1", egg)["spiders"],
        4
    );
    let release = tempfile::tempdir().unwrap();
    let until = release.path().join("go").display().to_string();
    for (i, (_, node)) in nodes.iter().enumerate() {
        let v = node.post(
            "schedule.json",
            &format!("project=p&spider=slow&jobid=slow{i}&until_file={until}"),
        );
        assert_eq!(v["status"], "ok", "{v}");
    }
    let running = support::wait_until("a slow crawl on each node", LONG, || {
        let v = nodes[0].1.get("listjobs.json");
        let running = v["running"].as_array().unwrap().clone();
        (running.len() == 2 && running.iter().all(|e| e["pid"].as_u64().is_some()))
            .then_some(running)
    });
    let victim = running.iter().find(|e| e["node"] == "n1").unwrap().clone();
    let survivor = running.iter().find(|e| e["node"] == "n0").unwrap().clone();
    let victim_log = nodes[1].0.path().join(format!(
        "logs/p/slow/{}.log",
        victim["id"].as_str().unwrap()
    ));
    support::wait_until("the victim's crawl logging", LONG, || {
        std::fs::read_to_string(&victim_log)
            .ok()?
            .contains("slow spider: first tick")
            .then_some(())
    });
    // The machine of n1 goes: the daemon and its crawl's process group, at once.
    let pid = victim["pid"].as_i64().unwrap() as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    nodes[1].1.signal(nix::sys::signal::Signal::SIGKILL);
    nodes[1].1.wait_exit();
    let v = nodes[0]
        .1
        .post("schedule.json", "project=p&spider=echo&jobid=after");
    assert_eq!(v["status"], "ok", "{v}");
    let n0 = &nodes[0].1;
    let job = victim["id"].as_str().unwrap().to_owned();
    let status = support::wait_until("the lost node's job recorded", LONG, || {
        let v = n0.get(&format!("status.json?job={job}"));
        (v["currstate"] == "finished").then_some(v)
    });
    assert_eq!(status["outcome"], "lost", "{status}");
    let listed = n0.get("listnodes.json");
    let n1 = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n1")
        .unwrap()
        .clone();
    assert_eq!(n1["alive"], false, "{listed}");
    // The queue carries on: the survivor's crawl ends, then the waiting job runs on it.
    std::fs::write(release.path().join("go"), "").unwrap();
    support::wait_until("the waiting job finished", LONG, || {
        (n0.get("status.json?job=after")["currstate"] == "finished").then_some(())
    });
    let done = n0.get(&format!(
        "status.json?job={}",
        survivor["id"].as_str().unwrap()
    ));
    assert_eq!(done["outcome"], "finished", "{done}");
    // The lost job never ran again anywhere.
    let logs: Vec<PathBuf> = nodes
        .iter()
        .flat_map(|(dir, _)| support::daemon::log_files(dir.path(), &job))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    // Its files are on a machine that is gone: the answer says so.
    let (status, body) =
        support::daemon::http_get_status(&format!("{}/logs/p/slow/{job}.log", nodes[0].1.url));
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("on node n1, which is not answering"),
        "{body}"
    );
    // The node comes back under its name.
    let dir = nodes[1].0.path().to_path_buf();
    nodes[1].1 = Daemon::start(&dir, &node_conf(&url, "n1"));
    let listed = nodes[0].1.get("listnodes.json");
    let n1 = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n1")
        .unwrap()
        .clone();
    assert_eq!(n1["alive"], true, "{listed}");
}

/// The configuration of a node of the storm: two slots, every finished job and log kept (the
/// test counts them all), a `node_timeout` that a loaded machine's heartbeats still meet.
fn storm_conf(url: &str, name: &str) -> String {
    format!(
        "database_url = {url}\nnode_name = {name}\nnode_timeout = 10\nmax_proc = 2\n\
         finished_to_keep = 1000\njobs_to_keep = 0\n"
    )
}

/// Many clients schedule at once, through every node, while crawls run: every job a node
/// acknowledged runs once, on one node, and every node lists each of them finished, once.
#[test]
fn a_storm_of_schedules_through_every_node_loses_none_and_runs_none_twice() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 8;
    let url = support::postgres::database();
    let nodes: Vec<(tempfile::TempDir, Daemon)> = (0..3)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let d = Daemon::start(dir.path(), &storm_conf(&url, &format!("n{i}")));
            (dir, d)
        })
        .collect();
    let egg = support::build_egg(&support::test_project_dir());
    assert_eq!(
        support::upload_egg(&nodes[0].1.url, "p", "1", egg)["spiders"],
        4
    );
    // Crawls running when the storm starts: a long one through each node (half the slots).
    let release = tempfile::tempdir().unwrap();
    let until = release.path().join("go").display().to_string();
    let mut expected = BTreeSet::new();
    for (i, (_, node)) in nodes.iter().enumerate() {
        let v = node.post(
            "schedule.json",
            &format!("project=p&spider=slow&jobid=slow{i}&until_file={until}"),
        );
        assert_eq!(v["status"], "ok", "{v}");
        expected.insert(format!("slow{i}"));
    }
    support::wait_until("the three slow crawls running", LONG, || {
        let v = nodes[0].1.get("listjobs.json");
        (ids(&v["running"]).len() == 3).then_some(())
    });
    // The storm: every thread sends its requests as fast as they are answered, round-robin
    // over the nodes, each with a job id of its own.
    let urls: Vec<String> = nodes.iter().map(|(_, d)| d.url.clone()).collect();
    let start = std::sync::Barrier::new(THREADS);
    let answers: Vec<(String, String, Result<Value, String>)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (urls, start) = (&urls, &start);
                s.spawn(move || {
                    start.wait();
                    (0..PER_THREAD)
                        .map(|i| {
                            let job = format!("storm-{t}-{i}");
                            let node = &urls[(t + i) % urls.len()];
                            let answer = support::daemon::http_post(
                                &format!("{node}/schedule.json"),
                                &format!("project=p&spider=echo&jobid={job}"),
                            )
                            .map_err(|e| format!("no answer: {e}"))
                            .and_then(|body| {
                                serde_json::from_str::<Value>(&body)
                                    .map_err(|e| format!("not JSON ({e}): {body}"))
                            });
                            (job, node.clone(), answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    assert_eq!(answers.len(), THREADS * PER_THREAD);
    let mut refused = Vec::new();
    for (job, node, answer) in &answers {
        match answer {
            Ok(v) if v["status"] == "ok" => {
                assert_eq!(v["jobid"], job.as_str(), "{node}: {v}");
                assert!(expected.insert(job.clone()), "{job} acknowledged twice");
            }
            other => refused.push(format!("{job} through {node}: {other:?}")),
        }
    }
    // A healthy database has no reason to refuse a schedule, however many arrive at once.
    assert!(refused.is_empty(), "schedules refused: {refused:#?}");
    std::fs::write(release.path().join("go"), "").unwrap();
    let storm_deadline = Duration::from_secs(600);
    support::wait_until("every acknowledged job finished", storm_deadline, || {
        let v = nodes[1].1.get("listjobs.json");
        let finished = ids(&v["finished"]);
        expected.is_subset(&finished).then_some(())
    });
    for (i, (_, node)) in nodes.iter().enumerate() {
        let v = node.get("listjobs.json");
        assert!(v["pending"].as_array().unwrap().is_empty(), "n{i}: {v}");
        assert!(v["running"].as_array().unwrap().is_empty(), "n{i}: {v}");
        let finished = v["finished"].as_array().unwrap();
        let listed: Vec<&str> = finished.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let once: BTreeSet<String> = listed.iter().map(|&id| id.to_owned()).collect();
        assert_eq!(
            listed.len(),
            once.len(),
            "n{i} lists a job twice: {listed:?}"
        );
        assert_eq!(
            once, expected,
            "n{i} lists other jobs than the acknowledged ones"
        );
        for e in finished {
            assert_eq!(e["outcome"], "finished", "n{i}: {e}");
            assert!(
                ["n0", "n1", "n2"].contains(&e["node"].as_str().unwrap()),
                "n{i}: {e}"
            );
        }
        for job in &expected {
            let status = node.get(&format!("status.json?job={job}"));
            assert_eq!(status["currstate"], "finished", "n{i}: {status}");
        }
    }
    // Each job ran once: one log file across the three nodes' folders.
    for job in &expected {
        let logs: Vec<PathBuf> = nodes
            .iter()
            .flat_map(|(dir, _)| support::daemon::log_files(dir.path(), job))
            .collect();
        assert_eq!(logs.len(), 1, "{job}: {logs:?}");
    }
}
