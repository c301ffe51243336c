//! Shared helpers for the integration tests (`mod support;` in `tests/*.rs`).
//!
//! * [`venv()`]: a Python venv with the packages of `tests/requirements.txt` (Scrapy,
//!   scrapyd-client, python-scrapyd-api), created once under the target directory and shared by
//!   all test binaries.
//! * [`build_egg()`]: the egg of a test project (`tests/project`, `tests/projects/*`), built with
//!   `setup.py bdist_egg` like `scrapyd-deploy` does.
//! * [`Site`]: a tiny local website for the `site` spider.
//! * [`wait_until()`] / [`wait_until_async()`]: deadline-bounded polling instead of sleeps.
//! * [`server`]: an in-process scrapyd-rs (`TestServer`).
//! * [`postgres`]: a real PostgreSQL server for the test binary, a database per test.
#![allow(dead_code)]

pub mod daemon;
pub mod postgres;
pub mod server;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the `wait_until*` helpers poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Environment variable naming the interpreter the test venv is created from (default `python3`).
pub const PYTHON_ENV_VAR: &str = "SCRAPYD_RS_TEST_PYTHON";

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the repository root if relative),
/// else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// `tests/project`: the Scrapy project with the `echo`, `fail`, `site` and `slow` spiders.
pub fn test_project_dir() -> PathBuf {
    repo_root().join("tests").join("project")
}

/// `tests/projects/<name>`: a deliberately broken project (`settings_raise`, `no_entrypoint`,
/// `import_error`).
pub fn broken_project_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("tests").join("projects").join(name);
    assert!(
        dir.join("setup.py").is_file(),
        "no broken test project named {name:?} (looked for {})",
        dir.display()
    );
    dir
}

/// The test venv (see [`venv()`]).
#[derive(Debug)]
pub struct Venv {
    /// The venv directory: `<target dir>/test-venv`.
    pub dir: PathBuf,
    /// Its interpreter (`<dir>/bin/python`); use it as the daemon's `python`.
    pub python: PathBuf,
    /// Its scripts directory (`scrapy`, `scrapyd-deploy`, `scrapyd-client`, ...).
    pub bin: PathBuf,
}

impl Venv {
    /// Path of a script installed in the venv, e.g. `exe("scrapyd-deploy")`.
    pub fn exe(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// A command running a venv script, with the venv activated (`VIRTUAL_ENV`, `PATH`).
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.exe(name));
        command.env("VIRTUAL_ENV", &self.dir);
        let mut paths = vec![self.bin.clone()];
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path));
        }
        if let Ok(path) = std::env::join_paths(paths) {
            command.env("PATH", path);
        }
        command
    }
}

/// The shared test venv, created on first use from `tests/requirements.txt`.
///
/// It lives at `<target dir>/test-venv` and is (re)created with `$SCRAPYD_RS_TEST_PYTHON -m venv`
/// (default `python3`) and `pip install -r tests/requirements.txt` unless its marker file shows it
/// was completed for the same requirements and interpreter. An exclusive lock on
/// `<target dir>/test-venv.lock` serializes test binaries running in parallel. Panics with pip's
/// output on failure.
pub fn venv() -> &'static Venv {
    static VENV: OnceLock<Venv> = OnceLock::new();
    VENV.get_or_init(create_venv)
}

fn create_venv() -> Venv {
    let target = target_dir();
    fs::create_dir_all(&target)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", target.display()));
    let dir = target.join("test-venv");
    let bin = dir.join("bin");
    let venv = Venv {
        python: bin.join("python"),
        bin,
        dir,
    };

    let base_python = std::env::var(PYTHON_ENV_VAR).unwrap_or_else(|_| "python3".to_owned());
    let requirements_path = repo_root().join("tests").join("requirements.txt");
    let requirements = fs::read_to_string(&requirements_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements_path.display()));
    let expected_marker = format!("# base interpreter: {base_python}\n{requirements}");
    let marker = venv.dir.join(".scrapyd-rs-requirements");

    let lock_path = target.join("test-venv.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));

    let up_to_date = venv.python.exists()
        && fs::read_to_string(&marker).is_ok_and(|found| found == expected_marker);
    if !up_to_date {
        eprintln!(
            "creating the test venv {} from {} with {base_python} (takes a minute)",
            venv.dir.display(),
            requirements_path.display()
        );
        if venv.dir.exists() {
            fs::remove_dir_all(&venv.dir)
                .unwrap_or_else(|e| panic!("cannot remove {}: {e}", venv.dir.display()));
        }
        run_checked(
            Command::new(&base_python)
                .args(["-m", "venv"])
                .arg(&venv.dir),
            &format!("{base_python} -m venv (set {PYTHON_ENV_VAR} to choose another interpreter)"),
        );
        run_checked(
            Command::new(&venv.python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements_path),
            "pip install -r tests/requirements.txt",
        );
        fs::write(&marker, &expected_marker)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
    }
    // Closing the file releases the lock.
    drop(lock);
    venv
}

/// Runs `command` to completion; panics with its output unless it exits successfully.
pub fn run_checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {command:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Copies a project directory to `dst` (created), leaving out build leftovers (`build/`, `dist/`,
/// `*.egg-info/`, `__pycache__/`).
pub fn copy_project(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap_or_else(|e| panic!("cannot create {}: {e}", dst.display()));
    let entries =
        fs::read_dir(src).unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()));
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if matches!(name_str.as_ref(), "build" | "dist" | "__pycache__")
            || name_str.ends_with(".egg-info")
            || name_str.ends_with(".pyc")
        {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if from.is_dir() {
            copy_project(&from, &to);
        } else {
            fs::copy(&from, &to).unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", from.display(), to.display())
            });
        }
    }
}

/// A fresh copy of a project in a temporary directory (removed on drop), e.g. to run
/// `scrapyd-deploy` in without leaving build files in the repository.
pub fn project_copy(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("cannot create a temporary directory");
    copy_project(src, tmp.path());
    tmp
}

/// A temporary copy of `tests/project` whose `scrapy.cfg` `[deploy]` section points at `url`
/// (e.g. `http://127.0.0.1:<port>/`), for running `scrapyd-deploy` in (it has no `--url` option).
pub fn deployable_project_copy(url: &str) -> tempfile::TempDir {
    let tmp = project_copy(&test_project_dir());
    let cfg = tmp.path().join("scrapy.cfg");
    let text =
        fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("cannot read {}: {e}", cfg.display()));
    let mut found = false;
    let mut rewritten = String::new();
    for line in text.lines() {
        if line.starts_with("url =") {
            found = true;
            rewritten.push_str(&format!("url = {url}\n"));
        } else {
            rewritten.push_str(line);
            rewritten.push('\n');
        }
    }
    assert!(found, "no `url =` line in {}", cfg.display());
    fs::write(&cfg, rewritten).unwrap_or_else(|e| panic!("cannot write {}: {e}", cfg.display()));
    tmp
}

/// The egg of a project (e.g. [`test_project_dir()`]), built in a temporary copy with
/// `<venv python> setup.py bdist_egg`. Cached per directory for the life of the process.
pub fn build_egg(project_dir: &Path) -> Vec<u8> {
    type Cache = Mutex<HashMap<PathBuf, Arc<OnceLock<Vec<u8>>>>>;
    static EGGS: OnceLock<Cache> = OnceLock::new();
    let cell = EGGS
        .get_or_init(Cache::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(project_dir.to_path_buf())
        .or_default()
        .clone();
    cell.get_or_init(|| build_egg_uncached(project_dir)).clone()
}

fn build_egg_uncached(project_dir: &Path) -> Vec<u8> {
    let python = &venv().python;
    let work = project_copy(project_dir);
    run_checked(
        Command::new(python)
            .args(["setup.py", "-q", "bdist_egg"])
            .current_dir(work.path()),
        &format!("building the egg of {}", project_dir.display()),
    );
    let dist = work.path().join("dist");
    let eggs: Vec<PathBuf> = fs::read_dir(&dist)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dist.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "egg"))
        .collect();
    match eggs.as_slice() {
        [egg] => fs::read(egg).unwrap_or_else(|e| panic!("cannot read {}: {e}", egg.display())),
        _ => panic!("expected one egg in {}, found {eggs:?}", dist.display()),
    }
}

/// Reads a JSON-lines file (a Scrapy `.jl` item feed) into one value per line.
pub fn read_jsonlines(path: &Path) -> Vec<serde_json::Value> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {line}", path.display()))
        })
        .collect()
}

/// The pages [`Site`] serves: `(path, title)`. `/` links to `/page/1` and `/page/2`, which link
/// to each other and back to `/`; `/` also links to another port on 127.0.0.1 (a different host
/// for the `site` spider, which must not follow it).
pub const SITE_PAGES: [(&str, &str); 3] = [
    ("/", "Test site home"),
    ("/page/1", "Test page 1"),
    ("/page/2", "Test page 2"),
];

/// Off-site link on the home page of [`Site`] (never followed by the `site` spider).
pub const SITE_OFFSITE_LINK: &str = "http://127.0.0.1:9/elsewhere";

fn site_page(path: &str) -> Option<String> {
    let (title, links): (&str, &[&str]) = match path {
        "/" => (SITE_PAGES[0].1, &["/page/1", "page/2", SITE_OFFSITE_LINK]),
        "/page/1" => (SITE_PAGES[1].1, &["/", "/page/2"]),
        "/page/2" => (SITE_PAGES[2].1, &["/", "1"]),
        _ => return None,
    };
    let links: String = links
        .iter()
        .map(|href| format!("<li><a href=\"{href}\">{href}</a></li>\n"))
        .collect();
    Some(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n<ul>\n{links}</ul></body></html>\n"
    ))
}

/// A tiny HTTP server on `127.0.0.1:<ephemeral port>` serving [`SITE_PAGES`], one thread per
/// connection, `Connection: close` answers. Stops accepting when dropped.
pub struct Site {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Site {
    /// Binds `127.0.0.1:0` and serves in a background thread.
    pub fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("no local address");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            thread::Builder::new()
                .name("test-site".to_owned())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let requests = Arc::clone(&requests);
                        let stop = Arc::clone(&stop);
                        // Detached: a handler never outlives its read timeout by much.
                        let _ = thread::Builder::new()
                            .name("test-site-conn".to_owned())
                            .spawn(move || serve_connection(stream, &requests, &stop));
                    }
                })
                .expect("cannot spawn the test site thread")
        };
        Site {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// The home page URL, `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The URL of a path (`"/page/1"` → `http://127.0.0.1:<port>/page/1`).
    pub fn url_of(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Request targets received so far (`"/"`, `"/page/1"`, ...), in order.
    pub fn requested_paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake up the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A path that [`Site`] accepts but never answers.
pub const HANG_PATH: &str = "/hang";

fn serve_connection(stream: TcpStream, requests: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    // Skip the headers (no request body is expected).
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default();
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(target.to_owned());

    if path == HANG_PATH {
        // Never answers (until the site is dropped, or 5 minutes): a request in flight that a
        // graceful Scrapy shutdown waits for.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        return;
    }
    let (status, body) = match (method, site_page(path)) {
        ("GET" | "HEAD", Some(page)) => ("200 OK", page),
        ("GET" | "HEAD", None) => (
            "404 Not Found",
            "<html><head><title>Not found</title></head><body>Not found</body></html>\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", String::new()),
    };
    let mut response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Calls `f` every [`POLL_INTERVAL`] until it returns `Some`; panics naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Async twin of [`wait_until()`]: awaits `f()` every [`POLL_INTERVAL`] (tokio sleep) until it
/// returns `Some`; panics naming `what` after `timeout`.
pub async fn wait_until_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Stores the test project's egg as `{root}/eggs/{project}/1.egg` with the spider list `["s1"]`
/// beside it, as the daemon keeps them: the project is then schedulable without running Python
/// (for tests whose interpreter is missing or fake).
pub fn store_listed_egg(root: &Path, project: &str) {
    let folder = root.join("eggs").join(project);
    fs::create_dir_all(&folder)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
    fs::write(folder.join("1.egg"), build_egg(&test_project_dir())).expect("write the egg");
    fs::write(folder.join("1.spiders"), br#"["s1"]"#).expect("write the spider list");
}

/// Uploads an egg to `url` (`addversion.json`, multipart, as scrapyd-deploy does) from
/// synchronous code and returns the JSON answer.
pub fn upload_egg(url: &str, project: &str, version: &str, egg: Vec<u8>) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let form = reqwest::multipart::Form::new()
            .text("project", project.to_owned())
            .text("version", version.to_owned())
            .part(
                "egg",
                reqwest::multipart::Part::bytes(egg).file_name("project.egg"),
            );
        reqwest::Client::new()
            .post(format!("{url}/addversion.json"))
            .multipart(form)
            .send()
            .await
            .expect("POST addversion.json")
            .json()
            .await
            .expect("JSON answer")
    })
}
