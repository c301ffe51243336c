//! The real `scrapyd-rs` binary: command line, configuration files in the working directory,
//! unix socket plus TCP, SIGTERM, and a `kill -9` followed by a restart.

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::daemon::{
    Daemon, IO_TIMEOUT, binary, connect, http, http_post, split_url, write_conf,
};

const LONG: Duration = Duration::from_secs(90);

/// The signals a daemon catches, from `/proc/PID/status`'s `SigCgt` mask.
fn caught_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .expect("SigCgt in /proc/PID/status");
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

/// The handlers are installed before the daemon listens: a SIGTERM sent the moment its pid
/// file appears (written once it is bound, before it serves) stops it cleanly. With the default
/// action it would die at once, leaving its socket and crawls behind.
#[test]
fn a_sigterm_as_soon_as_the_daemon_listens_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let log = dir.path().join("daemon.log");
    for _ in 0..5 {
        write_conf(dir.path(), "");
        let mut child = binary()
            .arg("--pidfile")
            .arg(&pidfile)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Watched closely (every millisecond): the signal must follow the pid file at once.
        let deadline = std::time::Instant::now() + LONG;
        let listening = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Err(status);
            }
            if std::fs::read_to_string(&pidfile).is_ok_and(|text| text.ends_with('\n')) {
                break Ok(());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no pid file after {LONG:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Err(status) = listening {
            if log().contains("cannot listen") {
                continue; // the port was taken meanwhile
            }
            panic!("the daemon exited ({status}):\n{}", log());
        }
        let caught = caught_signals(child.id());
        for signal in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGINT,
        ] {
            assert_ne!(
                caught & (1 << (signal as i32 - 1)),
                0,
                "{signal} is not caught"
            );
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = support::wait_until("the exit", LONG, || child.try_wait().unwrap());
        assert!(
            status.success(),
            "the daemon exited with {status}:\n{}",
            log()
        );
        assert!(!pidfile.exists(), "the pid file is removed on exit");
        return;
    }
    panic!("no free port after 5 attempts");
}

#[test]
fn version_and_help() {
    let out = binary().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("scrapyd-rs {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = binary().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--config") && help.contains("--nodaemon"),
        "{help}"
    );
}

#[test]
fn bad_configuration_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (conf, expected) in [
        ("[scrapyd]\nmax_proc = abc\n", "max_proc"),
        ("[scrapyd]\nno_such_option = 1\n", "no_such_option"),
        ("[scrapyd]\nlauncher = my.custom.Launcher\n", "launcher"),
        ("[api_keys]\nsecretkey = ro:\n", "[api_keys] <key>"),
    ] {
        std::fs::write(dir.path().join("scrapyd.conf"), conf).unwrap();
        let out = binary()
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{conf}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("scrapyd.conf") && stderr.contains(expected),
            "{conf}: {stderr}"
        );
        assert!(
            !stderr.contains("secretkey"),
            "an API key in the message: {stderr}"
        );
    }
    // --config adds a file, read last.
    std::fs::write(
        dir.path().join("scrapyd.conf"),
        "[scrapyd]\nhttp_port = 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("extra.conf"), "[scrapyd]\nmax_proc = -3\n").unwrap();
    let out = binary()
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .args(["--config", "extra.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("extra.conf"));
    let out = binary()
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .args(["--config", "missing.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf"));
}

#[test]
fn unix_socket_and_tcp_are_both_served() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("scrapyd.sock");
    let mut d = Daemon::start(
        dir.path(),
        &format!("unix_socket_path = {}\n", socket.display()),
    );
    assert_eq!(d.get("daemonstatus.json")["node_name"], "bin-node");
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let body = http(&mut s, "GET /listprojects.json HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(
        body,
        "{\"projects\": [], \"status\": \"ok\", \"node_name\": \"bin-node\"}\n"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.assert_clean_exit();
    assert!(!socket.exists(), "the socket is removed on exit");
}

/// A GET with an API key as the basic-auth user name: the status line and the body.
fn http_get_as(url: &str, key: &str) -> (String, String) {
    use base64::Engine;
    let (host, path) = split_url(url);
    let mut s = connect(&host).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn api_keys_of_scrapyd_conf_scope_projects_and_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // Lines 1-4 are written by `write_conf`; the keys are on lines 6 and 7.
    let d = Daemon::start(
        dir.path(),
        "[api_keys]\nSecretAlphaKey = alpha\nsecretreadonly = ro:*\n",
    );
    deploy(&d, "alpha");
    deploy(&d, "beta");
    let (status, body) = http_get_as(
        &format!("{}/api/scrapyd/listprojects.json", d.url),
        "SecretAlphaKey",
    );
    assert!(status.contains("200"), "{status} {body}");
    let alpha: Value = serde_json::from_str(&body).unwrap();
    let alpha = alpha["projects"][0].as_i64().unwrap();
    let (_, all) = http_get_as(
        &format!("{}/api/scrapyd/listprojects.json", d.url),
        "secretreadonly",
    );
    let all: Value = serde_json::from_str(&all).unwrap();
    let beta = all["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .find(|p| *p != alpha)
        .unwrap();
    let (status, _) = http_get_as(
        &format!("{}/storage/jobq/{beta}/count", d.url),
        "SecretAlphaKey",
    );
    assert!(status.contains("401"), "{status}");
    let (status, _) = http_get_as(
        &format!("{}/storage/jobq/{alpha}/count", d.url),
        "SecretAlphaKey",
    );
    assert!(status.contains("200"), "{status}");
    let (status, body) = http_get_as(
        &format!("{}/api/scrapyd/listprojects.json", d.url),
        "SecretWrongKey",
    );
    assert!(
        status.contains("403") && body.contains("Authentication failed"),
        "{status} {body}"
    );
    let log = support::wait_until("the refusals logged", LONG, || {
        let log = std::fs::read_to_string(&d.log).unwrap_or_default();
        (log.matches("refused").count() >= 2).then_some(log)
    });
    assert!(log.contains("unknown API key"), "{log}");
    assert!(
        log.contains("scrapyd.conf line 6"),
        "the refused key is named by its line: {log}"
    );
    assert!(!log.contains("Secret"), "an API key in the log: {log}");
}

/// Uploads the test project's egg through the HTTP API.
fn deploy(d: &Daemon, project: &str) {
    let egg = support::build_egg(&support::test_project_dir());
    let v = support::upload_egg(&d.url, project, "1", egg);
    assert_eq!(v["spiders"], 4, "{v}");
}

/// Waits until `job` runs with a pid, and returns the pid.
fn running_pid(d: &Daemon, job: &str) -> u64 {
    support::wait_until("job running with a pid", LONG, || {
        let v = d.get("listjobs.json");
        v["running"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == job)
            .and_then(|e| e["pid"].as_u64())
    })
}

fn process_alive(pid: u64) -> bool {
    scrapyd_rs::process::identity(pid as u32).is_some()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// `kill -9` of the daemon: the acknowledged pending job is kept, and the crawl that outlived
/// the daemon is re-adopted by the next start (still running, cancellable, recorded at its end).
#[test]
fn kill_9_then_restart_re_adopts_the_running_crawl_and_keeps_pending_jobs() {
    kill_9_then_restart("max_proc = 1\n".into());
}

/// The same on PostgreSQL: the restarted node finds its name's heartbeat fresh, waits one
/// heartbeat, sees it did not move (its process is gone) and takes its name over.
#[test]
fn kill_9_then_restart_on_postgresql_takes_the_node_over_and_re_adopts() {
    let url = support::postgres::database();
    kill_9_then_restart(format!(
        "max_proc = 1\ndatabase_url = {url}\nnode_timeout = 4\n"
    ));
}

fn kill_9_then_restart(conf: String) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &conf);
    deploy(&d, "p");
    assert_eq!(
        d.post("schedule.json", "project=p&spider=slow&jobid=slow1")["jobid"],
        "slow1"
    );
    let pid = running_pid(&d, "slow1");
    support::wait_until("the slow spider's first tick", LONG, || {
        std::fs::read_to_string(dir.path().join("logs/p/slow/slow1.log"))
            .ok()?
            .contains("slow spider: first tick")
            .then_some(())
    });
    assert_eq!(
        d.post("schedule.json", "project=p&spider=echo&jobid=after")["jobid"],
        "after"
    );
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit();
    drop(d);
    assert!(process_alive(pid), "the crawl outlives the daemon");

    let d = Daemon::start(dir.path(), &conf);
    assert_eq!(d.get("status.json?job=slow1")["currstate"], "running");
    assert_eq!(running_pid(&d, "slow1"), pid, "re-adopted, same process");
    assert_eq!(
        d.get("status.json?job=after")["currstate"],
        "pending",
        "the adopted crawl holds the slot"
    );
    assert_eq!(
        d.post("cancel.json", "project=p&job=slow1")["prevstate"],
        "running"
    );
    support::wait_until("slow1 finished", LONG, || {
        (d.get("status.json?job=slow1")["currstate"] == "finished").then_some(())
    });
    let v = d.get("status.json?job=slow1");
    assert_eq!(v["outcome"], "cancelled", "{v}");
    assert_eq!(
        v["finish_reason"], "shutdown",
        "the runner reported the graceful stop: {v}"
    );
    support::wait_until("after finished", LONG, || {
        (d.get("status.json?job=after")["currstate"] == "finished").then_some(())
    });
    assert!(!process_alive(pid));
}

/// A daemon killed after spawning crawls but before recording their pids: at the restart a
/// crawl still running is found (its result file in its environment, its job id in its
/// arguments) and adopted, one that ended is recorded from its result file; neither runs a
/// second time.
#[test]
fn a_crawl_spawned_before_its_pid_was_recorded_is_adopted_not_run_twice() {
    use scrapyd_rs::config::DbsDir;
    use scrapyd_rs::storage::model::PendingJob;
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), "");
    deploy(&d, "p");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.assert_clean_exit();
    drop(d);

    // What the daemon had done when it died: the job taken off its queue, its process spawned.
    let dbs = dir.path().canonicalize().unwrap().join("dbs");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let [id, ended] = runtime.block_on(async {
        let storage = scrapyd_rs::storage::Storage::open(DbsDir::Dir(dbs.clone())).unwrap();
        let mut ids = [0; 2];
        for (i, job) in ["orphan", "ended"].into_iter().enumerate() {
            let pending = PendingJob::new("p", "slow", job);
            storage.enqueue(pending.into()).await.unwrap();
            let claim = storage.claim_next(vec!["p".to_string()], 1).await.unwrap();
            ids[i] = claim.expect("the job starts").record.id;
        }
        ids
    });
    // `ended` ran and ended while the daemon was down: its runner left its result file.
    std::fs::write(
        dbs.join("results").join(format!("{ended}.json")),
        r#"{"exit_code": 0, "finish_reason": "finished"}"#,
    )
    .unwrap();
    // A stand-in for the crawl, with what the launcher gives one: its own process group, the
    // result file in its environment, `_job` in its arguments.
    let mut crawl = Command::new(&support::venv().python)
        .args(["-c", "import time; time.sleep(600)", "crawl", "slow"])
        .args(["-a", "_job=orphan"])
        .env(
            "SCRAPYD_RS_RESULT",
            dbs.join("results").join(format!("{id}.json")),
        )
        .process_group(0)
        .spawn()
        .unwrap();
    struct Reap<'a>(&'a mut Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = crawl.id();
    let crawl = Reap(&mut crawl);

    let d = Daemon::start(dir.path(), "");
    assert_eq!(
        d.ending("ended"),
        (json!("finished"), json!("finished"), json!(0))
    );
    let v = d.get("listjobs.json?project=p");
    assert_eq!(v["pending"], serde_json::json!([]), "{v}");
    let running = v["running"].as_array().unwrap();
    assert_eq!(running.len(), 1, "{v}");
    assert_eq!(
        (running[0]["id"].as_str(), running[0]["pid"].as_u64()),
        (Some("orphan"), Some(pid as u64)),
        "{v}"
    );
    // It is the daemon's to cancel now.
    let v = d.post("cancel.json", "project=p&job=orphan");
    assert_eq!(v["prevstate"], "running", "{v}");
    let status = crawl.0.wait().unwrap();
    assert!(
        !status.success(),
        "the stand-in ends by the cancel's SIGINT: {status}"
    );
    let v = support::wait_until("the orphan recorded as finished", LONG, || {
        let v = d.get("status.json?job=orphan");
        (v["currstate"] == "finished").then_some(v)
    });
    assert_eq!(v["outcome"], "cancelled", "{v}");
    let v = d.get("listjobs.json?project=p");
    assert_eq!(
        v["finished"].as_array().unwrap().len(),
        2,
        "each run once: {v}"
    );
    assert_eq!(v["running"], serde_json::json!([]), "{v}");
}

/// A crawl that ends while the daemon is down is recorded from the runner's report; one that
/// vanished without a report is recorded as lost.
#[test]
fn crawls_that_end_while_the_daemon_is_down_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), "max_proc = 2\n");
    deploy(&d, "p");
    // `quick` finishes normally once this file exists, while the daemon is down.
    let release = dir.path().join("release");
    d.post(
        "schedule.json",
        &format!(
            "project=p&spider=slow&jobid=quick&until_file={}",
            release.display()
        ),
    );
    d.post("schedule.json", "project=p&spider=slow&jobid=killed");
    let quick = running_pid(&d, "quick");
    let killed = running_pid(&d, "killed");
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit();
    drop(d);
    std::fs::write(&release, "").unwrap();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(killed as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    support::wait_until("both crawls gone", LONG, || {
        (!process_alive(quick) && !process_alive(killed)).then_some(())
    });

    let d = Daemon::start(dir.path(), "max_proc = 2\n");
    // The listing is prepared at start-up, with both ends already recorded.
    support::wait_until("the jobs listing prepared", LONG, || {
        std::fs::read_to_string(&d.log)
            .ok()?
            .contains("Jobs listing ready: 2 finished jobs")
            .then_some(())
    });
    assert_eq!(
        d.ending("quick"),
        (json!("finished"), json!("finished"), json!(0))
    );
    let v = d.get("status.json?job=killed");
    assert_eq!(
        (v["currstate"].as_str(), v["outcome"].as_str()),
        (Some("finished"), Some("lost")),
        "{v}"
    );
}

/// `leave_crawls_running = on`: a SIGTERM stops the daemon but not its crawls, and the next
/// start re-adopts them (for upgrades).
#[test]
fn leave_crawls_running_lets_a_restart_re_adopt_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), "leave_crawls_running = on\n");
    deploy(&d, "p");
    // The crawl runs until the test creates this file.
    let release = dir.path().join("release");
    d.post(
        "schedule.json",
        &format!(
            "project=p&spider=slow&jobid=kept&until_file={}",
            release.display()
        ),
    );
    let pid = running_pid(&d, "kept");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.assert_clean_exit();
    drop(d);
    assert!(process_alive(pid));
    let d = Daemon::start(dir.path(), "leave_crawls_running = on\n");
    assert_eq!(running_pid(&d, "kept"), pid);
    std::fs::write(&release, "").unwrap();
    support::wait_until("kept finished", LONG, || {
        (d.get("status.json?job=kept")["currstate"] == "finished").then_some(())
    });
    let v = d.get("status.json?job=kept");
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["exit_code"].as_i64(),
            v["finish_reason"].as_str()
        ),
        (Some("finished"), Some(0), Some("finished")),
        "{v}"
    );
}

/// By default a SIGTERM stops the crawls (SIGINT, grace, SIGKILL) and records them.
#[test]
fn sigterm_stops_and_records_the_crawls() {
    let dir = tempfile::tempdir().unwrap();
    // Scrapy's graceful stop must not be cut short by the SIGKILL after `shutdown_timeout`
    // (10 s by default) on a loaded machine.
    let mut d = Daemon::start(dir.path(), "shutdown_timeout = 60\n");
    deploy(&d, "p");
    d.post("schedule.json", "project=p&spider=slow&jobid=stopped");
    let pid = running_pid(&d, "stopped");
    support::wait_until("the slow spider's first tick", LONG, || {
        std::fs::read_to_string(dir.path().join("logs/p/slow/stopped.log"))
            .ok()?
            .contains("slow spider: first tick")
            .then_some(())
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.assert_clean_exit();
    drop(d);
    assert!(!process_alive(pid), "no crawl outlives a normal stop");
    let d = Daemon::start(dir.path(), "");
    let v = d.get("status.json?job=stopped");
    assert_eq!(
        (v["outcome"].as_str(), v["finish_reason"].as_str()),
        (Some("cancelled"), Some("shutdown")),
        "{v}"
    );
}

#[test]
fn memory_dbs_dir_runs_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "dbs_dir = :memory:\n");
    let v = support::upload_egg(
        &d.url,
        "m",
        "1",
        support::build_egg(&support::test_project_dir()),
    );
    assert_eq!(v["status"], "ok", "{v}");
    let job = d.post("schedule.json", "project=m&spider=echo")["jobid"]
        .as_str()
        .unwrap()
        .to_owned();
    support::wait_until("job finished", LONG, || {
        (d.get(&format!("status.json?job={job}"))["currstate"] == "finished").then_some(())
    });
    assert!(
        !dir.path().join("dbs").exists(),
        "nothing written for :memory:"
    );
}

#[test]
fn python_scrapyd_api_drives_a_full_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "items_dir = items\n");
    let site = support::Site::start();
    let egg = dir.path().join("project.egg");
    std::fs::write(&egg, support::build_egg(&support::test_project_dir())).unwrap();
    let script = support::repo_root().join("tests/clients/scrapyd_api_cycle.py");
    let out = std::process::Command::new(&support::venv().python)
        .arg(script)
        .arg(&d.url)
        .arg(&egg)
        .arg(site.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("cycle: ok"));
}

/// `[settings]` projects (here from the `scrapy.cfg` in the working directory) need no egg:
/// their code is found through `scrapy.cfg`, as in Scrapyd.
#[test]
fn settings_projects_run_without_an_egg() {
    let dir = tempfile::tempdir().unwrap();
    support::copy_project(&support::test_project_dir(), dir.path());
    let d = Daemon::start(dir.path(), "items_dir = items\n");
    assert_eq!(
        d.get("listprojects.json")["projects"],
        serde_json::json!(["default"])
    );
    assert_eq!(
        d.get("listversions.json?project=default")["versions"],
        serde_json::json!([])
    );
    assert_eq!(
        d.get("listspiders.json?project=default")["spiders"],
        serde_json::json!(["echo", "fail", "site", "slow"])
    );
    assert_eq!(
        d.get("listspiders.json?project=default&_version=1")["message"],
        "version '1' not found"
    );
    let job = d.post("schedule.json", "project=default&spider=echo")["jobid"]
        .as_str()
        .unwrap()
        .to_owned();
    support::wait_until("job finished", LONG, || {
        (d.get(&format!("status.json?job={job}"))["currstate"] == "finished").then_some(())
    });
    let items = support::read_jsonlines(&dir.path().join(format!("items/default/echo/{job}.jl")));
    assert_eq!(
        items[0]["env"]["SCRAPY_SETTINGS_MODULE"],
        "testproject.settings"
    );
    assert_eq!(items[0]["env"]["SCRAPY_PROJECT"], "default");
    let project_file = items[0]["project_file"].as_str().unwrap();
    assert!(
        project_file.starts_with(&dir.path().canonicalize().unwrap().display().to_string())
            || project_file.starts_with(&dir.path().display().to_string()),
        "{project_file}"
    );
}

/// `kill -9` in the middle of a stream of schedules and uploads: after a restart every
/// `schedule.json` answered ok is pending, running or finished, and every `addversion.json`
/// answered ok is listed.
#[test]
fn kill_9_during_requests_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    // `/bin/true` as the interpreter: uploads list 0 spiders at once, crawls end at once.
    support::store_listed_egg(dir.path(), "p");
    let conf = "python = /bin/true\nfinished_to_keep = 100000\nmax_proc = 2\n";
    let mut d = Daemon::start(dir.path(), conf);
    let egg = support::build_egg(&support::test_project_dir());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_jobs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let acked_versions = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (url, stop, acked) = (d.url.clone(), stop.clone(), acked_jobs.clone());
        workers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let body = format!("project=p&spider=s1&jobid=w{w}-{i}");
                if let Ok(text) = http_post(&format!("{url}/schedule.json"), &body)
                    && let Ok(v) = serde_json::from_str::<Value>(&text)
                    && v["status"] == "ok"
                {
                    acked
                        .lock()
                        .unwrap()
                        .push(v["jobid"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    {
        let (url, stop, acked) = (d.url.clone(), stop.clone(), acked_versions.clone());
        workers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let version = format!("v{i}");
                let form = reqwest::multipart::Form::new()
                    .text("project", "up")
                    .text("version", version.clone())
                    .part(
                        "egg",
                        reqwest::multipart::Part::bytes(egg.clone()).file_name("p.egg"),
                    );
                let answer: Option<Value> = rt.block_on(async {
                    client
                        .post(format!("{url}/addversion.json"))
                        .multipart(form)
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()
                });
                if answer.is_some_and(|v| v["status"] == "ok") {
                    acked.lock().unwrap().push(version);
                }
            }
        }));
    }
    support::wait_until("requests acknowledged", LONG, || {
        (acked_jobs.lock().unwrap().len() >= 150 && acked_versions.lock().unwrap().len() >= 5)
            .then_some(())
    });
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    drop(d);

    let d = Daemon::start(dir.path(), conf);
    let jobs = acked_jobs.lock().unwrap().clone();
    for job in &jobs {
        let state = d.get(&format!("status.json?job={job}"))["currstate"].clone();
        assert!(state.is_string(), "{job} was acknowledged but is {state}");
    }
    let versions = d.get("listversions.json?project=up")["versions"].clone();
    for v in acked_versions.lock().unwrap().iter() {
        assert!(
            versions.as_array().unwrap().iter().any(|x| x == v.as_str()),
            "{v} missing from {versions}"
        );
    }
    println!(
        "{} schedules and {} uploads acknowledged before kill -9: all there",
        jobs.len(),
        acked_versions.lock().unwrap().len()
    );
}

/// A disk that fills while an egg is stored (simulated with a file-size limit on the daemon):
/// a clear error, nothing stored, earlier data intact, and the daemon goes on.
#[test]
fn a_full_disk_while_storing_an_egg_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut wrapped = Command::new("sh");
    // 256 blocks of 512 bytes: writes beyond 128 KiB fail with EFBIG (SIGXFSZ ignored).
    wrapped.args([
        "-c",
        "trap '' XFSZ; ulimit -f 256; exec \"$0\"",
        env!("CARGO_BIN_EXE_scrapyd-rs"),
    ]);
    let d = Daemon::start_with(dir.path(), "", wrapped);
    deploy(&d, "small");
    // An egg larger than the limit: the test project plus a 200 KiB file.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(support::build_egg(
        &support::test_project_dir(),
    )))
    .unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        for i in 0..zip.len() {
            w.raw_copy_file(zip.by_index_raw(i).unwrap()).unwrap();
        }
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("testproject/padding.bin", options).unwrap();
        std::io::Write::write_all(&mut w, &vec![7u8; 200 * 1024]).unwrap();
        w.finish().unwrap();
    }
    let big = out.into_inner();
    let v = support::upload_egg(&d.url, "big", "1", big);
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot store the egg") && message.contains("too large"),
        "{v}"
    );
    assert!(!dir.path().join("eggs/big").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("eggs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["small"], "no temporary file is left");
    assert_eq!(
        d.get("listprojects.json")["projects"],
        serde_json::json!(["small"])
    );
    assert_eq!(
        d.get("listspiders.json?project=small")["spiders"],
        serde_json::json!(["echo", "fail", "site", "slow"])
    );
}

/// A malformed `database_url` stops the configuration with a message naming the option (and
/// not its password); an unreachable one stops start-up with a message naming the URL without
/// its password, in seconds rather than a hang.
#[test]
fn bad_or_unreachable_database_urls_stop_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (conf, expected) in [
        (
            "database_url = mysql://u:hunter2@db/x\n",
            "expected a PostgreSQL URL",
        ),
        (
            "database_url = postgresql://u:hunter2@127.0.0.1:1/x\n",
            "postgresql://u:***@127.0.0.1:1/x",
        ),
        ("node_timeout = 0\n", "node_timeout"),
        ("node_url = ftp://x\n", "node_url"),
    ] {
        write_conf(dir.path(), conf);
        let out = binary()
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{conf}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{conf}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a password in the message: {stderr}"
        );
    }
    // SCRAPYD_DATABASE_URL wins over the file.
    write_conf(dir.path(), "database_url = mysql://nope\n");
    let out = binary()
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env(
            "SCRAPYD_DATABASE_URL",
            "postgresql://u:hunter2@127.0.0.1:1/x",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("postgresql://u:***@127.0.0.1:1/x"),
        "{stderr}"
    );
}

/// Two live processes may not share a `node_name` on one database: the second waits one
/// heartbeat, sees the first one's heartbeat move, and refuses to start.
#[test]
fn a_second_live_node_with_the_same_name_is_refused() {
    let url = support::postgres::database();
    let conf = format!("database_url = {url}\nnode_timeout = 2\n");
    let first = tempfile::tempdir().unwrap();
    let d = Daemon::start(first.path(), &conf);
    let second = tempfile::tempdir().unwrap();
    write_conf(second.path(), &conf);
    let out = binary()
        .current_dir(second.path())
        .env("HOME", second.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another node named \"bin-node\" is running"),
        "{stderr}"
    );
    // The first node was not disturbed.
    assert_eq!(d.get("daemonstatus.json")["status"], "ok");
}
