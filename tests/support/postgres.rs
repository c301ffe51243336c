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
//!
//! The binaries are looked for under `/usr/lib/postgresql/<version>/bin` (the newest) or in
//! `$SCRAPYD_RS_TEST_PG_BIN`; `.ci/run` installs Debian's `postgresql` package when they are
//! missing.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Environment variable naming the folder of `initdb`, `postgres` and `psql`.
pub const PG_BIN_ENV_VAR: &str = "SCRAPYD_RS_TEST_PG_BIN";

/// The uid and gid the server runs as when the tests run as root (`nobody`, `nogroup`).
const UNPRIVILEGED: u32 = 65534;

/// The running test server.
pub struct Server {
    pub bin: PathBuf,
    pub port: u16,
    pub data: PathBuf,
}

impl Server {
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
    let log = File::create(data.join("server.log")).expect("the server's log");
    let mut command = as_server_user(&bin.join("postgres"), true);
    command
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // The parent-death signal follows the thread that spawned the server: spawn it from a
    // thread that lives as long as the test binary (it reaps the server when it stops).
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<u32>>();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                watch(&mut child);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .expect("a thread for the test PostgreSQL server");
    rx.recv()
        .expect("the server's thread answers")
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("postgres").display()));
    let server = Server { bin, port, data };
    wait_ready(&server);
    server
}

/// Reaps the server when it exits (a test that stops it on purpose restarts it itself).
fn watch(child: &mut Child) {
    let _ = child.wait();
}

fn wait_ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = TcpStream::connect(("127.0.0.1", server.port)).is_ok()
            && Command::new(server.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &server.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(server.data.join("server.log")).unwrap_or_default();
            panic!("the test PostgreSQL server did not start within 60 s:\n{log}");
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
