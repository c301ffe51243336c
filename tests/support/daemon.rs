//! The real `scrapyd-rs` binary as a test drives it: a daemon process started in a folder
//! with its own `scrapyd.conf` on a free port, and a minimal HTTP client.

use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scrapyd-rs"));
    cmd.env_remove("RUST_LOG");
    for var in [
        "SCRAPYD_BIND_ADDRESS",
        "SCRAPYD_HTTP_PORT",
        "SCRAPYD_USERNAME",
        "SCRAPYD_PASSWORD",
        "SCRAPYD_UNIX_SOCKET_PATH",
        "SCRAPYD_DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `dir/scrapyd.conf`: `conf` with a free port, the test venv's Python (unless `conf`
/// names one) and `node_name = bin-node`. Returns the port.
pub fn write_conf(dir: &Path, conf: &str) -> u16 {
    let port = free_port();
    let python = super::venv().python.display().to_string();
    std::fs::write(dir.join("scrapyd.conf"), {
        let python = if conf.contains("python =") {
            String::new()
        } else {
            format!("python = {python}\n")
        };
        let node = if conf.contains("node_name =") {
            ""
        } else {
            "node_name = bin-node\n"
        };
        format!("[scrapyd]\nhttp_port = {port}\n{python}{node}{conf}")
    })
    .unwrap();
    port
}

/// A daemon process started in `dir` with `conf` as its `scrapyd.conf`.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    /// Where the daemon's standard error goes.
    pub log: std::path::PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, conf: &str) -> Daemon {
        Self::start_with(dir, conf, binary())
    }

    /// Like [`Daemon::start`], running `command` (the binary, possibly wrapped).
    ///
    /// The port is free when picked but not reserved: when another test takes it first, the
    /// daemon cannot listen and is started again on another port.
    pub fn start_with(dir: &Path, conf: &str, mut command: Command) -> Daemon {
        for _ in 0..5 {
            if let Some(daemon) = Self::try_start(dir, conf, &mut command) {
                return daemon;
            }
        }
        panic!("no free port after 5 attempts");
    }

    /// One attempt of [`Daemon::start_with`]; `None` when the port was taken.
    fn try_start(dir: &Path, conf: &str, command: &mut Command) -> Option<Daemon> {
        let port = write_conf(dir, conf);
        let log_path = dir.join("daemon.log");
        let child = command
            .current_dir(dir)
            .env("HOME", dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log_path,
        };
        let log = |d: &Daemon| std::fs::read_to_string(&d.log).unwrap_or_default();
        let url = format!("{}/daemonstatus.json", daemon.url);
        let listening = format!("available at http://127.0.0.1:{port}/");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Ready when it answers and its log says it listens on the port (an answer alone could
        // come from another test's server on a port taken meanwhile).
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                let log = log(&daemon);
                if log.contains("cannot listen") {
                    return None;
                }
                panic!("the daemon exited ({status}):\n{log}");
            }
            if log(&daemon).contains(&listening) && http_get(&url).is_ok() {
                return Some(daemon);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not answer in 30 s:\n{}",
                log(&daemon)
            );
            std::thread::sleep(super::POLL_INTERVAL);
        }
    }

    pub fn get(&self, path: &str) -> Value {
        serde_json::from_str(&http_get(&format!("{}/{path}", self.url)).unwrap()).unwrap()
    }

    /// `status.json`'s `currstate`, `outcome` and `exit_code` of `job`.
    pub fn ending(&self, job: &str) -> (Value, Value, Value) {
        let v = self.get(&format!("status.json?job={job}"));
        (
            v["currstate"].clone(),
            v["outcome"].clone(),
            v["exit_code"].clone(),
        )
    }

    pub fn post(&self, path: &str, body: &str) -> Value {
        serde_json::from_str(&http_post(&format!("{}/{path}", self.url), body).unwrap()).unwrap()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        super::wait_until("daemon exit", LONG, || self.child.try_wait().unwrap())
    }

    /// Waits for the daemon to exit and asserts it exited with status 0 (not by a signal).
    pub fn assert_clean_exit(&mut self) {
        let status = self.wait_exit();
        assert!(
            status.success(),
            "the daemon exited with {status}:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Daemon {
    /// SIGTERM, as systemd would, so the daemon cleans up after itself; SIGKILL if it hangs.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 client over any stream (TCP or unix socket).
pub fn http(stream: &mut impl ReadWrite, request: &str) -> std::io::Result<String> {
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok(body)
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_owned(), format!("/{path}"))
}

/// A TCP connection whose reads and writes fail after a minute: a daemon that stops answering
/// fails the test instead of hanging it.
pub fn connect(host: &str) -> std::io::Result<std::net::TcpStream> {
    let s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

pub fn http_get(url: &str) -> std::io::Result<String> {
    let (host, path) = split_url(url);
    let mut s = connect(&host)?;
    http(
        &mut s,
        &format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"),
    )
}

/// The status code and body of a GET.
pub fn http_get_status(url: &str) -> (u16, String) {
    let (host, path) = split_url(url);
    let mut s = connect(&host).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn http_post(url: &str, body: &str) -> std::io::Result<String> {
    let (host, path) = split_url(url);
    let mut s = connect(&host)?;
    http(
        &mut s,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The log files of `job` of project `p` (spider `slow` or `echo`) in a daemon's folder `dir`:
/// one when it ran there, none when it did not.
pub fn log_files(dir: &Path, job: &str) -> Vec<std::path::PathBuf> {
    ["slow", "echo"]
        .iter()
        .map(|spider| dir.join(format!("logs/p/{spider}/{job}.log")))
        .filter(|p| p.is_file())
        .collect()
}
