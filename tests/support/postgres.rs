//! A real PostgreSQL server for the tests, made from Debian's binaries.
//!
//! * The first use in a test binary makes a cluster with `initdb` once per target directory
//!   (`<target>/test-postgres/template`, under a lock so parallel test binaries don't race),
//!   copies it to a data folder of its own (`run-<pid>`) and starts `postgres` on a free loopback
//!   port. When the tests run as root, the server runs as `nobody` (PostgreSQL refuses root).
//! * The server gets the parent-death signal: it stops (fast shutdown) when the test binary
//!   exits, however it exits; the data folders of test binaries that are gone are removed at the
//!   next start.
//! * [`database()`] gives each test a database of its own and its URL.
//! * [`Server::stop`] and [`Server::start`] take the server down (fast shutdown) and bring the
//!   same cluster (data folder, port) back, for a test of a database outage. A test binary that
//!   does so has the server to itself: put such a test in a binary of its own.
//!
//! The binaries are looked for under `/usr/lib/postgresql/<version>/bin` (the newest) or in
//! `$SCRAPYD_RS_TEST_PG_BIN`; `.ci/run` installs Debian's `postgresql` package when they are
//! missing.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

/// Environment variable naming the folder of `initdb`, `postgres` and `psql`.
pub const PG_BIN_ENV_VAR: &str = "SCRAPYD_RS_TEST_PG_BIN";

/// The uid and gid the server runs as when the tests run as root (`nobody`, `nogroup`).
const UNPRIVILEGED: u32 = 65534;

/// The test server (running unless a test stopped it).
pub struct Server {
    pub bin: PathBuf,
    pub port: u16,
    pub data: PathBuf,
    /// The `postgres` process while it runs.
    process: Mutex<Option<Process>>,
}

/// A running `postgres`: its pid, and a message from its thread when it has exited (reaped).
struct Process {
    pid: u32,
    exited: mpsc::Receiver<()>,
}

impl Server {
    /// Stops the server (fast shutdown: open sessions are ended, as when a database server is
    /// restarted) and waits until it has exited. Panics if it was not running.
    pub fn stop(&self) {
        let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        let Process { pid, exited } = process
            .take()
            .expect("the test PostgreSQL server is not running");
        // SIGINT is PostgreSQL's fast shutdown.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap_or_else(|e| panic!("cannot signal the test PostgreSQL server ({pid}): {e}"));
        if exited.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!(
                "the test PostgreSQL server did not stop within 60 s:\n{}",
                self.log()
            );
        }
    }

    /// Starts the stopped server again: the same cluster on the same port. Returns when it
    /// accepts connections. Panics if it is running.
    pub fn start(&self) {
        let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            process.is_none(),
            "the test PostgreSQL server is already running"
        );
        let started = spawn(&self.bin, &self.data, self.port);
        wait_ready(self, &started);
        *process = Some(started);
    }

    /// Whether the server is running (not stopped by [`Server::stop`]).
    pub fn is_running(&self) -> bool {
        self.process
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The server's log (`server.log` in its data folder), every start of it.
    pub fn log(&self) -> String {
        fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL command as the superuser in database `postgres`; panics with psql's output
    /// when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Runs one SQL command as the superuser in database `db`; returns its rows, one per line,
    /// columns separated by `|`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let output = super::run_checked(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db])
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-c")
                .arg(sql),
            &format!("psql -c {sql:?}"),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// The test binary's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// A new, empty database for one test; returns its URL.
pub fn database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = server();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    server.psql(&format!("CREATE DATABASE {name}"));
    server.url(&name)
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV_VAR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: install Debian's \
             `postgresql` package (.ci/run does) or set {PG_BIN_ENV_VAR}"
        ),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Hands `path` to the server's user when the tests run as root.
fn give_to_server(path: &Path) {
    if is_root() {
        super::run_checked(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{UNPRIVILEGED}:{UNPRIVILEGED}"))
                .arg(path),
            "chown of the test PostgreSQL folder",
        );
    }
}

/// A command run as the server's user (and, for the server itself, stopped with the binary).
fn as_server_user(program: &Path, stop_with_us: bool) -> Command {
    let mut command = Command::new("setpriv");
    if is_root() {
        command.arg(format!("--reuid={UNPRIVILEGED}"));
        command.arg(format!("--regid={UNPRIVILEGED}"));
        command.arg("--clear-groups");
    }
    if stop_with_us {
        // SIGINT is PostgreSQL's fast shutdown.
        command.args(["--pdeathsig", "INT"]);
    }
    command.arg("--").arg(program);
    command
}

fn start() -> Server {
    let bin = bin_dir();
    let root = super::target_dir().join("test-postgres");
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let template = root.join("template");
    let lock_path = root.join("lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    remove_dead_runs(&root);
    give_to_server(&root);
    let reachable = as_server_user(Path::new("test"), false)
        .arg("-w")
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        reachable,
        "the test PostgreSQL server's user (nobody when the tests run as root) cannot write to \
         {}: every folder above it must be searchable by others (chmod o+x)",
        root.display()
    );
    if !template.join("PG_VERSION").is_file() {
        let _ = fs::remove_dir_all(&template);
        fs::create_dir_all(&template).unwrap();
        give_to_server(&template);
        super::run_checked(
            as_server_user(&bin.join("initdb"), false)
                .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
                .args(["--locale=C", "-D"])
                .arg(&template),
            "initdb of the test PostgreSQL cluster",
        );
    }
    let data = root.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&data);
    super::run_checked(
        Command::new("cp").arg("-a").arg(&template).arg(&data),
        "copy of the test PostgreSQL cluster",
    );
    give_to_server(&data);
    drop(lock);

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _ = fs::remove_file(data.join("server.log"));
    let process = spawn(&bin, &data, port);
    let server = Server {
        bin,
        port,
        data,
        process: Mutex::new(None),
    };
    wait_ready(&server, &process);
    *server
        .process
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(process);
    server
}

/// Starts `postgres` on the cluster in `data`, listening on `port`; its output is appended to
/// `server.log` there.
fn spawn(bin: &Path, data: &Path, port: u16) -> Process {
    let log = File::options()
        .create(true)
        .append(true)
        .open(data.join("server.log"))
        .expect("the server's log");
    let mut command = as_server_user(&bin.join("postgres"), true);
    command
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(data)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // The parent-death signal follows the thread that spawned the server: spawn it from a
    // thread that lives as long as the server (it reaps the server when it stops, and lives
    // until the test binary exits unless a test stops the server).
    let (tx, rx) = mpsc::channel::<std::io::Result<u32>>();
    let (exited_tx, exited) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                watch(&mut child);
                let _ = exited_tx.send(());
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .expect("a thread for the test PostgreSQL server");
    let pid = rx
        .recv()
        .expect("the server's thread answers")
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("postgres").display()));
    Process { pid, exited }
}

/// Reaps the server when it exits (a test that stops it on purpose restarts it itself).
fn watch(child: &mut Child) {
    let _ = child.wait();
}

fn wait_ready(server: &Server, process: &Process) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if process.exited.try_recv().is_ok() {
            panic!(
                "the test PostgreSQL server exited as it started:\n{}",
                server.log()
            );
        }
        let ready = TcpStream::connect(("127.0.0.1", server.port)).is_ok()
            && Command::new(server.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &server.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the test PostgreSQL server did not start within 60 s:\n{}",
                server.log()
            );
        }
        std::thread::sleep(super::POLL_INTERVAL);
    }
}

/// Removes the data folders of test binaries that are no longer running.
fn remove_dead_runs(root: &Path) {
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
