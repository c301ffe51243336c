//! Configuration: `scrapyd.conf` files layered as Scrapyd layers them, typed and validated once.
//!
//! # Sources
//!
//! [`Config::load`] reads, in this order (a later value of an option wins):
//!
//! 1. the embedded defaults ([`DEFAULT_CONF`], Scrapyd 1.6's `default_scrapyd.conf` plus our
//!    `python` option);
//! 2. if [`LoadOptions::system`]: `/etc/scrapyd/scrapyd.conf`, then every entry of
//!    `/etc/scrapyd/conf.d/` in sorted order;
//! 3. `scrapyd.conf` in [`LoadOptions::cwd`];
//! 4. `.scrapyd.conf` in [`LoadOptions::home`];
//! 5. the closest `scrapy.cfg`, searching from the cwd upward (only its `[scrapyd]` and
//!    `[settings]` sections are used);
//! 6. each of [`LoadOptions::extra_files`] (`--config FILE`; these must exist);
//! 7. the environment variables `SCRAPYD_BIND_ADDRESS`, `SCRAPYD_HTTP_PORT`, `SCRAPYD_USERNAME`,
//!    `SCRAPYD_PASSWORD` and `SCRAPYD_UNIX_SOCKET_PATH` (an empty variable is ignored).
//!
//! # File format
//!
//! The files are parsed with the semantics of Python's `configparser.ConfigParser()` as Scrapyd
//! uses it: `=` or `:` between name and value (the first one on the line wins), `#` and `;`
//! comments only on lines of their own (`password = a#b` keeps `a#b`), option names lower-cased,
//! section names case-sensitive, values continued on more-indented lines, `[DEFAULT]` values
//! visible in every section, `%(name)s` interpolation with `%%` for a literal `%`, and duplicate
//! sections or options within one file rejected.
//!
//! # Validation
//!
//! Everything is checked once, at load time: numbers, booleans, paths, the class-path options
//! (only Scrapyd's own classes are accepted, since scrapyd-rs cannot load Python code),
//! `[services]` entries and unknown `[scrapyd]` options. A [`ConfigError`] names the file (or
//! environment variable), the section and option, the value and the problem.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Where pending-job queues and the finished-job store live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbsDir {
    /// `dbs_dir = :memory:` — everything in memory (lost on exit).
    Memory,
    /// A directory (absolute after loading).
    Dir(PathBuf),
}

/// Where item feeds go (`items_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemsDir {
    /// Empty: no item feed.
    Disabled,
    /// A local directory (absolute after loading); also what `file:` URLs become.
    Local(PathBuf),
    /// Any other URL (`s3://…`, `https://…`): passed to Scrapy's FEEDS, nothing served.
    Url(String),
}

/// The built-in webservices that `[services]` entries may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `scrapyd.webservice.DaemonStatus` (`daemonstatus.json`).
    DaemonStatus,
    /// `scrapyd.webservice.AddVersion` (`addversion.json`).
    AddVersion,
    /// `scrapyd.webservice.Schedule` (`schedule.json`).
    Schedule,
    /// `scrapyd.webservice.Cancel` (`cancel.json`).
    Cancel,
    /// `scrapyd.webservice.Status` (`status.json`).
    Status,
    /// `scrapyd.webservice.ListProjects` (`listprojects.json`).
    ListProjects,
    /// `scrapyd.webservice.ListVersions` (`listversions.json`).
    ListVersions,
    /// `scrapyd.webservice.ListSpiders` (`listspiders.json`).
    ListSpiders,
    /// `scrapyd.webservice.ListJobs` (`listjobs.json`).
    ListJobs,
    /// `scrapyd.webservice.DeleteProject` (`delproject.json`).
    DelProject,
    /// `scrapyd.webservice.DeleteVersion` (`delversion.json`).
    DelVersion,
    /// `scrapyd_rs.webservice.ListNodes` (`listnodes.json`): the nodes of a cluster (this
    /// node alone on SQLite). scrapyd-rs's own.
    ListNodes,
}

impl Service {
    /// Every service, in the order of Scrapyd's default `[services]` section.
    pub const ALL: [Service; 12] = [
        Service::Schedule,
        Service::Cancel,
        Service::Status,
        Service::AddVersion,
        Service::ListProjects,
        Service::ListVersions,
        Service::ListSpiders,
        Service::DelProject,
        Service::DelVersion,
        Service::ListJobs,
        Service::DaemonStatus,
        Service::ListNodes,
    ];

    /// The Scrapyd class implementing this service, e.g. `scrapyd.webservice.Schedule`.
    #[must_use]
    pub fn class_path(self) -> &'static str {
        match self {
            Service::DaemonStatus => "scrapyd.webservice.DaemonStatus",
            Service::AddVersion => "scrapyd.webservice.AddVersion",
            Service::Schedule => "scrapyd.webservice.Schedule",
            Service::Cancel => "scrapyd.webservice.Cancel",
            Service::Status => "scrapyd.webservice.Status",
            Service::ListProjects => "scrapyd.webservice.ListProjects",
            Service::ListVersions => "scrapyd.webservice.ListVersions",
            Service::ListSpiders => "scrapyd.webservice.ListSpiders",
            Service::ListJobs => "scrapyd.webservice.ListJobs",
            Service::DelProject => "scrapyd.webservice.DeleteProject",
            Service::DelVersion => "scrapyd.webservice.DeleteVersion",
            Service::ListNodes => "scrapyd_rs.webservice.ListNodes",
        }
    }

    /// The service implemented by the Scrapyd class `class_path`, if it is one of Scrapyd's own.
    #[must_use]
    pub fn from_class_path(class_path: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|service| service.class_path() == class_path)
    }
}

/// The typed daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// TCP address; empty disables TCP.
    pub bind_address: String,
    /// TCP port; 0 disables TCP (as in Scrapyd).
    pub http_port: u16,
    /// Unix socket served in addition to TCP.
    pub unix_socket_path: Option<PathBuf>,
    /// Basic-auth user name; auth is on when both it and `password` are non-empty.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    /// Maximum concurrent crawls; 0 means `max_proc_per_cpu` × CPUs (see [`Config::capacity`]).
    pub max_proc: usize,
    /// Crawls per CPU when `max_proc` is 0.
    pub max_proc_per_cpu: usize,
    /// Finished jobs kept in the job store.
    pub finished_to_keep: usize,
    /// Time between two polls of the queues.
    pub poll_interval: Duration,
    /// `None` when `logs_dir` is empty.
    pub logs_dir: Option<PathBuf>,
    /// Item feed destination.
    pub items_dir: ItemsDir,
    /// `None` when `jobs_dir` is empty.
    pub jobs_dir: Option<PathBuf>,
    /// Egg storage directory (absolute).
    pub eggs_dir: PathBuf,
    /// Queue and job-store databases.
    pub dbs_dir: DbsDir,
    /// Log and item files kept per spider.
    pub jobs_to_keep: usize,
    /// `node_name` in responses (default: the host name).
    pub node_name: String,
    /// Lower-cased header name giving the base path of page links.
    pub prefix_header: String,
    /// Tracebacks in error responses.
    pub debug: bool,
    /// Interpreter that runs crawls and spider listings.
    pub python: String,
    /// After a cancel, how long a crawl may take to stop before its process group is killed.
    pub cancel_timeout: Duration,
    /// At shutdown, how long crawls get to stop after SIGINT before they are killed.
    pub shutdown_timeout: Duration,
    /// At shutdown, leave crawls running so that the next start re-adopts them.
    pub leave_crawls_running: bool,
    /// Largest request body accepted (an egg upload), in bytes.
    pub max_upload_size: usize,
    /// API keys of the Scrapy Cloud API (`/api/`, `/storage/`) and the projects each may reach:
    /// the `api_keys` option (every project), then the `[api_keys]` section; none: see
    /// [`crate::cloud`].
    pub api_keys: Vec<ApiKey>,
    /// Where each job's items, logs, requests and stats samples are kept for the Scrapy Cloud
    /// API (absolute).
    pub jobdata_dir: PathBuf,
    /// Finished jobs kept per spider by the Scrapy Cloud API (metadata and data); 0 keeps all.
    pub jobdata_to_keep: usize,
    /// The PostgreSQL database the nodes of a cluster share (`database_url`, or
    /// `SCRAPYD_DATABASE_URL`); `None`: SQLite under `dbs_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// How other nodes reach this one (`node_url`); `None`: from `bind_address` and the port.
    pub node_url: Option<String>,
    /// A node whose heartbeat is older than this is dead (`node_timeout`).
    pub node_timeout: Duration,
    /// Endpoint path (e.g. `schedule.json`) → service, after applying `[services]`.
    pub services: Vec<(String, Service)>,
    /// `[settings]`: project name → settings module, in file order.
    pub settings: Vec<(String, String)>,
    /// The files that were read, in order.
    pub sources: Vec<PathBuf>,
}

/// A PostgreSQL URL; its `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// A `postgresql://` (or `postgres://`) URL; `None` for anything else.
    #[must_use]
    pub fn parse(url: &str) -> Option<DatabaseUrl> {
        (url.starts_with("postgresql://") || url.starts_with("postgres://"))
            .then(|| DatabaseUrl(url.to_owned()))
    }

    /// The URL itself, password included (for connecting, never for a message).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::storage::postgres::without_password(&self.0))
    }
}

/// An API key of the Scrapy Cloud API and what it may reach. Its `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key, as written (compared exactly, case included).
    pub key: String,
    /// What it may reach.
    pub access: KeyAccess,
    /// Where it was configured (`/etc/scrapyd/scrapyd.conf line 12`, or `` `api_keys` in … ``):
    /// what log lines name instead of the key itself.
    pub origin: String,
}

/// What an [`ApiKey`] may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAccess {
    /// The projects granted (a grant without a project is every project), each read-write
    /// or read-only; `listprojects.json` lists them.
    Projects(Vec<ProjectGrant>),
    /// Like Zyte's admin keys: every project read-write, and the calls only admins may make
    /// (a bulk cancel by count). An admin is a member of no project, so `listprojects.json`
    /// lists none, as on Scrapy Cloud.
    Admin,
}

/// One project (or every project) that a key may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectGrant {
    /// A project name or Scrapy Cloud project id; `None` is every project (`*`).
    pub project: Option<String>,
    /// Whether the key may change it (schedule, cancel, write data), not only read it.
    pub write: bool,
}

/// What a key may do with one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProjectRight {
    /// Read its jobs, data, settings.
    Read,
    /// Also schedule, cancel, deploy, write data and settings.
    Write,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<hidden>")
            .field("access", &self.access)
            .field("origin", &self.origin)
            .finish()
    }
}

impl ApiKey {
    /// A key that reaches every project, read-write (what the `api_keys` option gives).
    pub fn every_project(key: impl Into<String>) -> ApiKey {
        ApiKey {
            key: key.into(),
            access: KeyAccess::Projects(vec![ProjectGrant {
                project: None,
                write: true,
            }]),
            origin: "api_keys".into(),
        }
    }

    /// What the key may do with the project called `name` (Scrapy Cloud id `id`): `None`,
    /// nothing. A grant that is a number names the project with that id (a project named by
    /// a number has it), any other grant a project name. Of several grants that name the
    /// project, the widest wins.
    pub fn right(&self, name: Option<&str>, id: Option<i64>) -> Option<ProjectRight> {
        match &self.access {
            KeyAccess::Admin => Some(ProjectRight::Write),
            KeyAccess::Projects(grants) => grants
                .iter()
                .filter(|g| match &g.project {
                    None => true,
                    Some(p) => match crate::names::decimal_id(p) {
                        Some(granted) => id == Some(granted),
                        None => Some(p.as_str()) == name,
                    },
                })
                .map(|g| {
                    if g.write {
                        ProjectRight::Write
                    } else {
                        ProjectRight::Read
                    }
                })
                .max(),
        }
    }

    /// Whether `listprojects.json` shows the project to this key (admins belong to none).
    pub fn lists(&self, name: &str, id: i64) -> bool {
        !self.is_admin() && self.right(Some(name), Some(id)).is_some()
    }

    /// Whether the key reaches every project the same way, so that no project needs to be
    /// looked up to decide.
    pub fn reaches_every_project(&self) -> Option<ProjectRight> {
        match &self.access {
            KeyAccess::Admin => Some(ProjectRight::Write),
            KeyAccess::Projects(grants) => {
                let all = grants
                    .iter()
                    .filter(|g| g.project.is_none())
                    .map(|g| g.write)
                    .max()?;
                // A read-only `*` with a read-write project still depends on the project.
                (all || grants.iter().all(|g| !g.write)).then_some(if all {
                    ProjectRight::Write
                } else {
                    ProjectRight::Read
                })
            }
        }
    }

    /// Whether this is an admin key.
    pub fn is_admin(&self) -> bool {
        self.access == KeyAccess::Admin
    }
}

/// Scrapyd 1.6's `default_scrapyd.conf`, plus scrapyd-rs's `python` option.
///
/// Always read first; every other source overrides it.
pub const DEFAULT_CONF: &str = "\
[scrapyd]
# Application options
application       = scrapyd.app.application
bind_address      = 127.0.0.1
http_port         = 6800
unix_socket_path  =
username          =
password          =
spiderqueue       = scrapyd.spiderqueue.SqliteSpiderQueue

# Poller options
poller            = scrapyd.poller.QueuePoller
poll_interval     = 5.0

# Launcher options
launcher          = scrapyd.launcher.Launcher
max_proc          = 0
max_proc_per_cpu  = 4
logs_dir          = logs
items_dir         =
jobs_dir          =
jobs_to_keep      = 5
runner            = scrapyd.runner
python            = python3
cancel_timeout    = 30
shutdown_timeout  = 10
leave_crawls_running = off

# Web UI and API options
webroot           = scrapyd.website.Root
prefix_header     = x-forwarded-prefix
debug             = off
max_upload_size   = 104857600
api_keys          =

# Egg storage options
eggstorage        = scrapyd.eggstorage.FilesystemEggStorage
eggs_dir          = eggs

# Job storage options
jobstorage        = scrapyd.jobstorage.MemoryJobStorage
finished_to_keep  = 100

# Directory options
dbs_dir           = dbs
jobdata_dir       = jobdata
jobdata_to_keep   = 100

# Cluster options (several nodes sharing one PostgreSQL database)
database_url      =
node_url          =
node_timeout      = 60

[services]
schedule.json     = scrapyd.webservice.Schedule
cancel.json       = scrapyd.webservice.Cancel
status.json       = scrapyd.webservice.Status
addversion.json   = scrapyd.webservice.AddVersion
listprojects.json = scrapyd.webservice.ListProjects
listversions.json = scrapyd.webservice.ListVersions
listspiders.json  = scrapyd.webservice.ListSpiders
delproject.json   = scrapyd.webservice.DeleteProject
delversion.json   = scrapyd.webservice.DeleteVersion
listjobs.json     = scrapyd.webservice.ListJobs
daemonstatus.json = scrapyd.webservice.DaemonStatus
listnodes.json    = scrapyd_rs.webservice.ListNodes
";

/// The directory holding Scrapyd's system-wide configuration.
const SYSTEM_DIR: &str = "/etc/scrapyd";

/// The environment variables that override `[scrapyd]` options (Scrapyd 1.5.0+).
const ENV_OVERRIDES: [(&str, &str); 6] = [
    ("bind_address", "SCRAPYD_BIND_ADDRESS"),
    ("database_url", "SCRAPYD_DATABASE_URL"),
    ("http_port", "SCRAPYD_HTTP_PORT"),
    ("username", "SCRAPYD_USERNAME"),
    ("password", "SCRAPYD_PASSWORD"),
    ("unix_socket_path", "SCRAPYD_UNIX_SOCKET_PATH"),
];

/// Every `[scrapyd]` option that is not a class path.
const VALUE_OPTIONS: [&str; 29] = [
    "bind_address",
    "http_port",
    "unix_socket_path",
    "username",
    "password",
    "poll_interval",
    "max_proc",
    "max_proc_per_cpu",
    "logs_dir",
    "items_dir",
    "jobs_dir",
    "jobs_to_keep",
    "prefix_header",
    "debug",
    "eggs_dir",
    "finished_to_keep",
    "dbs_dir",
    "node_name",
    "python",
    "cancel_timeout",
    "shutdown_timeout",
    "leave_crawls_running",
    "max_upload_size",
    "api_keys",
    "jobdata_dir",
    "jobdata_to_keep",
    "database_url",
    "node_url",
    "node_timeout",
];

/// The class-path options and the Scrapyd classes (or module) each accepts.
const CLASS_OPTIONS: [(&str, &[&str]); 8] = [
    ("application", &["scrapyd.app.application"]),
    ("spiderqueue", &["scrapyd.spiderqueue.SqliteSpiderQueue"]),
    ("poller", &["scrapyd.poller.QueuePoller"]),
    ("launcher", &["scrapyd.launcher.Launcher"]),
    ("runner", &["scrapyd.runner"]),
    ("webroot", &["scrapyd.website.Root"]),
    ("eggstorage", &["scrapyd.eggstorage.FilesystemEggStorage"]),
    (
        "jobstorage",
        &[
            "scrapyd.jobstorage.MemoryJobStorage",
            "scrapyd.jobstorage.SqliteJobStorage",
        ],
    ),
];

/// Python's `configparser.MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded [`DEFAULT_CONF`].
    Builtin,
    /// A line of a configuration file (1-based; the option's first line).
    File {
        /// The file, as it was opened.
        path: PathBuf,
        /// The line of the option (its first line when continued).
        line: usize,
    },
    /// An environment variable such as `SCRAPYD_HTTP_PORT`.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin => f.write_str("built-in defaults"),
            Origin::File { path, .. } => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

impl Origin {
    /// The file and line (`/etc/scrapyd/scrapyd.conf line 12`), or the variable.
    fn place(&self) -> String {
        match self {
            Origin::File { path, line } => format!("{} line {line}", path.display()),
            other => other.to_string(),
        }
    }

    /// `" (line N)"` for a file, empty otherwise; appended to error messages.
    fn line_suffix(&self) -> String {
        match self {
            Origin::File { line, .. } => format!(" (line {line})"),
            Origin::Builtin | Origin::Env(_) => String::new(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file given with `--config` does not exist.
    #[error("{}: configuration file not found", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but could not be read (permissions, not UTF-8, ...).
    #[error("{}: cannot read configuration file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid INI (Python `configparser` rules).
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An option has a value scrapyd-rs cannot use.
    #[error(transparent)]
    Invalid(Box<InvalidValue>),
}

/// An option whose value scrapyd-rs cannot use ([`ConfigError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: [{section}] {option} = {value:?}: {problem}{}", origin.line_suffix())]
pub struct InvalidValue {
    /// Where the value came from.
    pub origin: Origin,
    /// The section (`scrapyd`, `services`, `settings`).
    pub section: String,
    /// The option name (lower-cased).
    pub option: String,
    /// The value as written (before interpolation).
    pub value: String,
    /// What is wrong.
    pub problem: String,
}

impl ConfigError {
    /// A [`ConfigError::Invalid`].
    fn invalid(
        origin: Origin,
        section: &str,
        option: &str,
        value: &str,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid(Box::new(InvalidValue {
            origin,
            section: section.to_owned(),
            option: option.to_owned(),
            value: value.to_owned(),
            problem: problem.into(),
        }))
    }
}

/// What [`Config::load`] reads, so that tests need not touch the real process state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The daemon's working directory: where `scrapyd.conf` is looked up, where the `scrapy.cfg`
    /// search starts, and what relative paths resolve against. Should be absolute.
    pub cwd: PathBuf,
    /// The user's home directory (for `~/.scrapyd.conf`); `None` skips that file.
    pub home: Option<PathBuf>,
    /// Whether to read `/etc/scrapyd/scrapyd.conf` and `/etc/scrapyd/conf.d/*`.
    pub system: bool,
    /// Files given with `--config`, read last, in order; each must exist. Relative paths are
    /// relative to `cwd`.
    pub extra_files: Vec<PathBuf>,
    /// Environment variables (only the `SCRAPYD_*` overrides are looked at; the last
    /// occurrence of a name wins).
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    /// Options for the running process: its current directory, `$HOME`, system files on, the
    /// process's `SCRAPYD_*` environment variables, and `extra_files`.
    ///
    /// # Errors
    ///
    /// The current directory cannot be determined.
    pub fn from_process(extra_files: Vec<PathBuf>) -> io::Result<LoadOptions> {
        let cwd = std::env::current_dir()?;
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .or_else(std::env::home_dir);
        let env = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with("SCRAPYD_")
                    .then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect();
        Ok(LoadOptions {
            cwd,
            home,
            system: true,
            extra_files,
            env,
        })
    }
}

impl Config {
    /// Reads every configuration source (see the module docs), applies the environment
    /// overrides and validates the result.
    ///
    /// # Errors
    ///
    /// A `--config` file is missing ([`ConfigError::NotFound`]), a file exists but cannot be
    /// read ([`ConfigError::Read`]), is not valid INI ([`ConfigError::Syntax`]), or an option
    /// has an unusable value ([`ConfigError::Invalid`]).
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        load_from(opts, Path::new(SYSTEM_DIR))
    }

    /// The embedded defaults only (no files, no environment), with relative paths resolved
    /// against `cwd` and `node_name` set to the host name.
    ///
    /// # Panics
    ///
    /// Never: [`DEFAULT_CONF`] is a valid constant (checked by a unit test).
    #[allow(clippy::expect_used)] // DEFAULT_CONF is a constant; a unit test checks it.
    #[must_use]
    pub fn defaults(cwd: &Path) -> Config {
        let ini = builtin_ini();
        build(&ini, &[], cwd, Vec::new()).expect("the embedded default configuration is valid")
    }

    /// Whether a TCP listener is wanted: `bind_address` non-empty and `http_port` non-zero.
    #[must_use]
    pub fn tcp_enabled(&self) -> bool {
        !self.bind_address.is_empty() && self.http_port != 0
    }

    /// How many crawls may run at once: `max_proc`, or when it is 0, the number of CPUs times
    /// `max_proc_per_cpu`; always at least 1.
    #[must_use]
    pub fn capacity(&self) -> usize {
        let capacity = if self.max_proc > 0 {
            self.max_proc
        } else {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            cpus.saturating_mul(self.max_proc_per_cpu)
        };
        capacity.max(1)
    }

    /// Whether basic authentication is on: both `username` and `password` non-empty.
    #[must_use]
    pub fn auth_enabled(&self) -> bool {
        !self.username.is_empty() && !self.password.is_empty()
    }

    /// The local item directory served under `/items/`, if items go to the local filesystem.
    #[must_use]
    pub fn items_local(&self) -> Option<&Path> {
        match &self.items_dir {
            ItemsDir::Local(path) => Some(path),
            ItemsDir::Disabled | ItemsDir::Url(_) => None,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Loading

/// [`Config::load`] with the system directory as a parameter, so tests can use a temp dir.
fn load_from(opts: &LoadOptions, system_dir: &Path) -> Result<Config, ConfigError> {
    let mut ini = builtin_ini();
    let mut sources = Vec::new();

    let mut read =
        |path: &Path, required: bool, only: Option<&[&str]>| -> Result<(), ConfigError> {
            if let Some(file) = read_ini_file(path, required)? {
                tracing::debug!(path = %path.display(), "read configuration file");
                ini.merge(file, only);
                sources.push(path.to_path_buf());
            }
            Ok(())
        };

    if opts.system {
        read(&system_dir.join("scrapyd.conf"), false, None)?;
        for path in sorted_dir_entries(&system_dir.join("conf.d"))? {
            read(&path, false, None)?;
        }
    }
    read(&opts.cwd.join("scrapyd.conf"), false, None)?;
    if let Some(home) = &opts.home {
        read(&home.join(".scrapyd.conf"), false, None)?;
    }
    if let Some(path) = closest_scrapy_cfg(&opts.cwd) {
        read(&path, false, Some(&["scrapyd", "settings"]))?;
    }
    for path in &opts.extra_files {
        // Relative to the working directory, like any command-line path.
        read(&opts.cwd.join(path), true, None)?;
    }

    build(&ini, &opts.env, &opts.cwd, sources)
}

/// The parsed embedded defaults.
#[allow(clippy::expect_used)] // DEFAULT_CONF is a constant; a unit test checks it.
fn builtin_ini() -> Ini {
    parse_ini(DEFAULT_CONF, None).expect("the embedded default configuration parses")
}

/// Reads and parses one file. A missing file (or a directory, as Python skips those) gives
/// `Ok(None)` unless `required`.
fn read_ini_file(path: &Path, required: bool) -> Result<Option<Ini>, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return if required {
                Err(ConfigError::NotFound {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(None)
            };
        }
        Err(err) if !required && path.is_dir() => {
            tracing::debug!(path = %path.display(), error = %err, "skipping directory");
            return Ok(None);
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let text = String::from_utf8(bytes).map_err(|err| ConfigError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, err.utf8_error()),
    })?;
    parse_ini(&text, Some(path)).map(Some)
}

/// The entries of `dir` sorted by name (Python's `sorted(Path(dir).glob("*"))`, which includes
/// dot-files). A missing directory has no entries.
fn sorted_dir_entries(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) if err.kind() == io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

/// The closest `scrapy.cfg`, searching from `cwd` (symlinks resolved, as Scrapy's
/// `closest_scrapy_cfg` does) upward to the root.
fn closest_scrapy_cfg(cwd: &Path) -> Option<PathBuf> {
    let start = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    start
        .ancestors()
        .map(|dir| dir.join("scrapy.cfg"))
        .find(|candidate| candidate.exists())
}

// ------------------------------------------------------------------------------------------------
// INI parsing (Python `configparser.ConfigParser()` semantics)

/// One option's value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    origin: Origin,
    /// The option name as written (the key is lower-cased, as Python's `optionxform` does;
    /// `[api_keys]` keeps the case of its keys).
    written: String,
}

/// The options of one section, in first-seen order.
type Options = Vec<(String, Entry)>;

/// Parsed (and possibly merged) INI data: `[DEFAULT]` plus named sections, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ini {
    defaults: Options,
    sections: Vec<(String, Options)>,
}

/// Sets `name` in `options`, keeping its position if it was already there (Python dict order).
fn set_option(options: &mut Options, name: String, entry: Entry) {
    match options.iter_mut().find(|(existing, _)| *existing == name) {
        Some((_, slot)) => *slot = entry,
        None => options.push((name, entry)),
    }
}

fn find_option<'a>(options: &'a Options, name: &str) -> Option<&'a Entry> {
    options
        .iter()
        .find(|(existing, _)| existing == name)
        .map(|(_, entry)| entry)
}

impl Ini {
    fn section(&self, name: &str) -> Option<&Options> {
        self.sections
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, options)| options)
    }

    fn section_mut(&mut self, name: &str) -> &mut Options {
        let index = match self
            .sections
            .iter()
            .position(|(existing, _)| existing == name)
        {
            Some(index) => index,
            None => {
                self.sections.push((name.to_owned(), Vec::new()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[index].1
    }

    /// Overlays `other` (a later file) on `self`. With `only`, just those named sections are
    /// taken (not `[DEFAULT]` either).
    fn merge(&mut self, other: Ini, only: Option<&[&str]>) {
        if only.is_none() {
            for (name, entry) in other.defaults {
                set_option(&mut self.defaults, name, entry);
            }
        }
        for (section, options) in other.sections {
            if only.is_some_and(|only| !only.contains(&section.as_str())) {
                continue;
            }
            let target = self.section_mut(&section);
            for (name, entry) in options {
                set_option(target, name, entry);
            }
        }
    }

    /// The raw value of `option` in `section`, falling back to `[DEFAULT]` (Python's `get`).
    fn lookup(&self, section: &str, option: &str) -> Option<&Entry> {
        self.section(section)
            .and_then(|options| find_option(options, option))
            .or_else(|| find_option(&self.defaults, option))
    }

    /// `raw` with `%(name)s` references resolved against `section` and `[DEFAULT]`
    /// (Python's `BasicInterpolation`). The error is the problem description.
    fn interpolate(&self, section: &str, raw: &str) -> Result<String, String> {
        let mut out = String::with_capacity(raw.len());
        self.interpolate_some(section, &mut out, raw, 1)?;
        Ok(out)
    }

    fn interpolate_some(
        &self,
        section: &str,
        out: &mut String,
        mut rest: &str,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(format!(
                "interpolation nested more than {MAX_INTERPOLATION_DEPTH} levels deep \
                 (do %(name)s references form a cycle?)"
            ));
        }
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("%(") {
                let name = after
                    .find(')')
                    .filter(|&close| close > 0 && after[close + 1..].starts_with('s'))
                    .map(|close| (&after[..close], &after[close + 2..]));
                let Some((name, after)) = name else {
                    return Err(format!(
                        "bad interpolation reference {rest:?} (expected %(name)s; write %% for a literal %)"
                    ));
                };
                let key = name.to_lowercase();
                let Some(entry) = self.lookup(section, &key) else {
                    return Err(format!(
                        "interpolation refers to {key:?}, which is not an option of [{section}] or [DEFAULT]"
                    ));
                };
                if entry.value.contains('%') {
                    self.interpolate_some(section, out, &entry.value, depth + 1)?;
                } else {
                    out.push_str(&entry.value);
                }
                rest = after;
            } else {
                return Err(format!(
                    "'%' must be followed by '%' or '(', found {rest:?} (write %% for a literal %)"
                ));
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

/// An option being read: its lines (joined with `\n` at the end) and first line number.
struct RawOption {
    name: String,
    written: String,
    lines: Vec<String>,
    line: usize,
}

/// Which section the parser is in.
#[derive(Clone, Copy)]
enum Current {
    Default,
    Section(usize),
}

/// Parses one file. `path` is `None` for the embedded defaults.
fn parse_ini(text: &str, path: Option<&Path>) -> Result<Ini, ConfigError> {
    let error_path =
        || path.map_or_else(|| PathBuf::from("<built-in defaults>"), Path::to_path_buf);
    let syntax = |line: usize, message: String| ConfigError::Syntax {
        path: error_path(),
        line,
        message,
    };

    // Python reads in universal-newlines mode: \r\n, \r and \n all end a line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");

    let mut defaults: Vec<RawOption> = Vec::new();
    let mut sections: Vec<(String, Vec<RawOption>)> = Vec::new();
    let mut current: Option<Current> = None;
    // Index of the option being continued in the current section.
    let mut option: Option<usize> = None;
    let mut indent_level = 0usize;

    for (index, line) in text.lines().enumerate() {
        let lineno = index + 1;
        let stripped = line.trim();
        let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
        if stripped.is_empty() || is_comment {
            // A blank line (not a comment) may be part of a multi-line value.
            if !is_comment && let (Some(cur), Some(opt)) = (current, option) {
                let options = match cur {
                    Current::Default => &mut defaults,
                    Current::Section(i) => &mut sections[i].1,
                };
                options[opt].lines.push(String::new());
            }
            continue;
        }

        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if let (Some(cur), Some(opt)) = (current, option)
            && indent > indent_level
        {
            let options = match cur {
                Current::Default => &mut defaults,
                Current::Section(i) => &mut sections[i].1,
            };
            options[opt].lines.push(stripped.to_owned());
            continue;
        }
        indent_level = indent;

        if let Some(header) = section_header(stripped) {
            if header == "DEFAULT" {
                current = Some(Current::Default);
            } else if sections.iter().any(|(name, _)| name == header) {
                return Err(syntax(
                    lineno,
                    format!("section [{header}] already appeared earlier in this file"),
                ));
            } else {
                sections.push((header.to_owned(), Vec::new()));
                current = Some(Current::Section(sections.len() - 1));
            }
            option = None;
            continue;
        }

        let Some(cur) = current else {
            return Err(syntax(
                lineno,
                format!("{stripped:?} comes before any [section] header"),
            ));
        };
        let Some(delim) = stripped.find(['=', ':']) else {
            let in_keys = matches!(cur, Current::Section(i) if sections[i].0 == "api_keys");
            // An API key alone on its line is not written into the message.
            let found = if in_keys {
                "a line of [api_keys] without \"=\" (not shown: it may hold a key)".to_owned()
            } else {
                format!("{stripped:?}")
            };
            return Err(syntax(
                lineno,
                format!(
                    "expected \"[section]\", \"name = value\" or \"name: value\", found {found}"
                ),
            ));
        };
        let written = stripped[..delim].trim_end().to_owned();
        let name = written.to_lowercase();
        if name.is_empty() {
            return Err(syntax(
                lineno,
                format!("option name missing in {stripped:?}"),
            ));
        }
        let value = stripped[delim + 1..].trim().to_owned();
        let (section_name, options) = match cur {
            Current::Default => ("DEFAULT", &mut defaults),
            Current::Section(i) => {
                let (name, options) = &mut sections[i];
                (name.as_str(), options)
            }
        };
        if options.iter().any(|existing| existing.name == name) {
            // An API key is never written into a message.
            let what = if section_name == "api_keys" {
                "this key (compared without case here)".to_owned()
            } else {
                format!("option {name:?}")
            };
            return Err(syntax(
                lineno,
                format!("{what} already appeared in [{section_name}] earlier in this file"),
            ));
        }
        options.push(RawOption {
            name,
            written,
            lines: vec![value],
            line: lineno,
        });
        option = Some(options.len() - 1);
    }

    let finish = |options: Vec<RawOption>| -> Options {
        options
            .into_iter()
            .map(|raw| {
                let value = raw.lines.join("\n").trim_end().to_owned();
                let origin = match path {
                    Some(path) => Origin::File {
                        path: path.to_path_buf(),
                        line: raw.line,
                    },
                    None => Origin::Builtin,
                };
                let entry = Entry {
                    value,
                    origin,
                    written: raw.written,
                };
                (raw.name, entry)
            })
            .collect()
    };
    Ok(Ini {
        defaults: finish(defaults),
        sections: sections
            .into_iter()
            .map(|(name, options)| (name, finish(options)))
            .collect(),
    })
}

/// The name in a `[section]` header line (already stripped), as Python's `\[(?P<header>.+)\]`
/// matches it: from the first `[` to the last `]`, anything after that ignored.
fn section_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    let close = inner.rfind(']')?;
    (close > 0).then(|| &inner[..close])
}

// ------------------------------------------------------------------------------------------------
// Building the typed configuration

/// One `[scrapyd]` option's effective value (after interpolation) and its provenance.
struct Setting {
    option: &'static str,
    /// The value as written (before interpolation), for messages.
    raw: String,
    value: String,
    origin: Origin,
}

impl Setting {
    fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::invalid(
            self.origin.clone(),
            "scrapyd",
            self.option,
            shown_value(self.option, &self.raw),
            problem,
        )
    }
}

/// The value of an option as an error message may show it: not at all for a secret (a
/// password, API keys, or what an unknown option's name suggests is one).
fn shown_value<'a>(option: &str, value: &'a str) -> &'a str {
    let secret = ["pass", "key", "secret", "token"]
        .iter()
        .any(|word| option.contains(word))
        // A database URL carries its password.
        || option == "database_url";
    if secret && !value.is_empty() {
        "<hidden>"
    } else {
        value
    }
}

/// Resolves `[scrapyd]` options: environment overrides first, then the merged files.
struct Resolver<'a> {
    ini: &'a Ini,
    env: &'a [(String, String)],
}

impl Resolver<'_> {
    /// The option's value, or `None` when no source sets it.
    fn get(&self, option: &'static str) -> Result<Option<Setting>, ConfigError> {
        if let Some((_, var)) = ENV_OVERRIDES.iter().find(|(name, _)| *name == option)
            && let Some((_, value)) = self.env.iter().rev().find(|(name, _)| name == var)
            && !value.is_empty()
        {
            return Ok(Some(Setting {
                option,
                raw: value.clone(),
                value: value.clone(),
                origin: Origin::Env((*var).to_owned()),
            }));
        }
        let Some(entry) = self.ini.lookup("scrapyd", option) else {
            return Ok(None);
        };
        let mut setting = Setting {
            option,
            raw: entry.value.clone(),
            value: String::new(),
            origin: entry.origin.clone(),
        };
        setting.value = self
            .ini
            .interpolate("scrapyd", &entry.value)
            .map_err(|problem| setting.invalid(problem))?;
        Ok(Some(setting))
    }

    /// The option's value; every option but `node_name` is set by the embedded defaults.
    fn required(&self, option: &'static str) -> Result<Setting, ConfigError> {
        self.get(option)?.ok_or_else(|| {
            ConfigError::invalid(
                Origin::Builtin,
                "scrapyd",
                option,
                "",
                "option missing from the built-in defaults",
            )
        })
    }
}

/// Validates the merged files plus environment into a [`Config`].
fn build(
    ini: &Ini,
    env: &[(String, String)],
    cwd: &Path,
    sources: Vec<PathBuf>,
) -> Result<Config, ConfigError> {
    check_unknown_options(ini)?;
    let r = Resolver { ini, env };

    for (option, accepted) in CLASS_OPTIONS {
        let setting = r.required(option)?;
        if !accepted.contains(&setting.value.as_str()) {
            let builtin = accepted.join(" or ");
            return Err(setting.invalid(format!(
                "scrapyd-rs cannot load Python classes; it uses its built-in equivalent of \
                 {builtin} (remove this option or set it to {})",
                accepted[0]
            )));
        }
    }

    let bind_address = r.required("bind_address")?.value;
    let http_port = {
        let s = r.required("http_port")?;
        match parse_python_int(&s.value).and_then(|n| u16::try_from(n).ok()) {
            Some(port) => port,
            None => return Err(s.invalid("expected a port number from 0 to 65535")),
        }
    };
    let unix_socket_path = {
        let s = r.required("unix_socket_path")?;
        (!s.value.is_empty()).then(|| absolute(cwd, Path::new(&s.value)))
    };
    let username = {
        let s = r.required("username")?;
        if s.value.contains(':') {
            return Err(s.invalid("The `username` option contains illegal character ':'"));
        }
        s.value
    };
    let password = r.required("password")?.value;

    let max_proc = non_negative(&r.required("max_proc")?)?;
    let max_proc_per_cpu = non_negative(&r.required("max_proc_per_cpu")?)?;
    let finished_to_keep = non_negative(&r.required("finished_to_keep")?)?;
    let jobs_to_keep = non_negative(&r.required("jobs_to_keep")?)?;
    let poll_interval = {
        let s = r.required("poll_interval")?;
        parse_python_float(&s.value)
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| s.invalid("expected a number of seconds greater than 0"))?
    };

    let optional_dir = |option| -> Result<Option<PathBuf>, ConfigError> {
        let s = r.required(option)?;
        Ok((!s.value.is_empty()).then(|| absolute(cwd, Path::new(&s.value))))
    };
    let logs_dir = optional_dir("logs_dir")?;
    let jobs_dir = optional_dir("jobs_dir")?;
    let items_dir = {
        let s = r.required("items_dir")?;
        parse_items_dir(&s.value, cwd).map_err(|problem| s.invalid(problem))?
    };
    let eggs_dir = {
        let s = r.required("eggs_dir")?;
        if s.value.is_empty() {
            return Err(s.invalid("expected a directory, not an empty value"));
        }
        absolute(cwd, Path::new(&s.value))
    };
    let dbs_dir = {
        let s = r.required("dbs_dir")?;
        match s.value.as_str() {
            ":memory:" => DbsDir::Memory,
            "" => return Err(s.invalid("expected a directory or :memory:, not an empty value")),
            dir => DbsDir::Dir(absolute(cwd, Path::new(dir))),
        }
    };

    let node_name = match r.get("node_name")? {
        Some(s) => s.value,
        None => hostname(),
    };
    let prefix_header = r.required("prefix_header")?.value.to_lowercase();
    let debug = {
        let s = r.required("debug")?;
        parse_python_bool(&s.value)
            .ok_or_else(|| s.invalid("expected a boolean: 1, yes, true, on, 0, no, false or off"))?
    };
    let python = {
        let s = r.required("python")?;
        if s.value.is_empty() {
            return Err(s.invalid("expected a Python interpreter (command or path)"));
        }
        resolve_command(cwd, s.value)
    };

    let seconds = |option| -> Result<Duration, ConfigError> {
        let s = r.required(option)?;
        parse_python_float(&s.value)
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| s.invalid("expected a number of seconds (0 or more)"))
    };
    let cancel_timeout = seconds("cancel_timeout")?;
    let shutdown_timeout = seconds("shutdown_timeout")?;
    let leave_crawls_running = {
        let s = r.required("leave_crawls_running")?;
        parse_python_bool(&s.value)
            .ok_or_else(|| s.invalid("expected a boolean: 1, yes, true, on, 0, no, false or off"))?
    };
    let max_upload_size = {
        let s = r.required("max_upload_size")?;
        match non_negative(&s)? {
            0 => return Err(s.invalid("expected a number of bytes greater than 0")),
            n => n,
        }
    };

    let api_keys = build_api_keys(ini, &r.required("api_keys")?)?;
    let jobdata_dir = {
        let s = r.required("jobdata_dir")?;
        if s.value.is_empty() {
            return Err(s.invalid("expected a directory, not an empty value"));
        }
        absolute(cwd, Path::new(&s.value))
    };
    let jobdata_to_keep = non_negative(&r.required("jobdata_to_keep")?)?;
    let database_url = {
        let s = r.required("database_url")?;
        match s.value.as_str() {
            "" => None,
            url => Some(DatabaseUrl::parse(url).ok_or_else(|| {
                s.invalid(
                    "expected a PostgreSQL URL: postgresql://user:password@host:port/database",
                )
            })?),
        }
    };
    let node_url = {
        let s = r.required("node_url")?;
        match s.value.trim_end_matches('/') {
            "" => None,
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.to_owned())
            }
            _ => return Err(s.invalid("expected an http:// or https:// URL")),
        }
    };
    let node_timeout = {
        let s = r.required("node_timeout")?;
        parse_python_float(&s.value)
            .filter(|secs| secs.is_finite() && *secs >= 1.0)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| s.invalid("expected a number of seconds (1 or more)"))?
    };

    Ok(Config {
        bind_address,
        http_port,
        unix_socket_path,
        username,
        password,
        max_proc,
        max_proc_per_cpu,
        finished_to_keep,
        poll_interval,
        logs_dir,
        items_dir,
        jobs_dir,
        eggs_dir,
        dbs_dir,
        jobs_to_keep,
        node_name,
        prefix_header,
        debug,
        python,
        cancel_timeout,
        shutdown_timeout,
        leave_crawls_running,
        max_upload_size,
        api_keys,
        jobdata_dir,
        jobdata_to_keep,
        database_url,
        node_url,
        node_timeout,
        services: build_services(ini)?,
        settings: build_settings(ini)?,
        sources,
    })
}

/// Rejects `[scrapyd]` options that Scrapyd 1.6 does not know (options inherited from
/// `[DEFAULT]` are not looked at).
fn check_unknown_options(ini: &Ini) -> Result<(), ConfigError> {
    let Some(options) = ini.section("scrapyd") else {
        return Ok(());
    };
    for (name, entry) in options {
        let known = VALUE_OPTIONS.contains(&name.as_str())
            || CLASS_OPTIONS.iter().any(|(option, _)| option == name);
        if known {
            continue;
        }
        let problem = match name.as_str() {
            "logs_to_keep" | "items_to_keep" => {
                format!("unknown option: `{name}` was renamed `jobs_to_keep`")
            }
            _ => "unknown option".to_owned(),
        };
        return Err(ConfigError::invalid(
            entry.origin.clone(),
            "scrapyd",
            name,
            shown_value(name, &entry.value),
            problem,
        ));
    }
    Ok(())
}

/// An invalid entry of `[services]` or `[settings]`.
fn invalid_entry(section: &str, name: &str, entry: &Entry, problem: String) -> ConfigError {
    ConfigError::invalid(entry.origin.clone(), section, name, &entry.value, problem)
}

/// `[services]` (its own entries, not `[DEFAULT]`'s): empty values remove endpoints, the others
/// must name one of Scrapyd's webservice classes.
fn build_services(ini: &Ini) -> Result<Vec<(String, Service)>, ConfigError> {
    let mut services = Vec::new();
    for (name, entry) in ini.section("services").into_iter().flatten() {
        let value = ini
            .interpolate("services", &entry.value)
            .map_err(|problem| invalid_entry("services", name, entry, problem))?;
        if value.is_empty() {
            continue;
        }
        if name.contains('/') {
            return Err(invalid_entry(
                "services",
                name,
                entry,
                "an endpoint name cannot contain '/'".to_owned(),
            ));
        }
        let Some(service) = Service::from_class_path(&value) else {
            return Err(invalid_entry(
                "services",
                name,
                entry,
                "scrapyd-rs cannot load Python classes; the value must be one of Scrapyd's \
                 webservices (scrapyd.webservice.Schedule, Cancel, Status, AddVersion, \
                 ListProjects, ListVersions, ListSpiders, DeleteProject, DeleteVersion, ListJobs, \
                 DaemonStatus), or empty to remove the endpoint"
                    .to_owned(),
            ));
        };
        services.push((name.clone(), service));
    }
    Ok(services)
}

/// `[settings]` (its own entries, not `[DEFAULT]`'s): project → settings module.
fn build_settings(ini: &Ini) -> Result<Vec<(String, String)>, ConfigError> {
    ini.section("settings")
        .into_iter()
        .flatten()
        .map(|(name, entry)| {
            let value = ini
                .interpolate("settings", &entry.value)
                .map_err(|problem| invalid_entry("settings", name, entry, problem))?;
            Ok((name.clone(), value))
        })
        .collect()
}

/// The API keys: those of the `api_keys` option reach every project; `[api_keys]` (its own
/// entries, not `[DEFAULT]`'s) gives each key its projects: `KEY = project1 7 ro:project2`
/// (names or Scrapy Cloud ids; `*` every project; `ro:` read-only) or `KEY = admin`. Keys are
/// case-sensitive, and never appear in an error message (the line does).
fn build_api_keys(ini: &Ini, option: &Setting) -> Result<Vec<ApiKey>, ConfigError> {
    let mut keys: Vec<ApiKey> = option
        .value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(|k| ApiKey {
            origin: format!("`api_keys` in {}", option.origin.place()),
            ..ApiKey::every_project(k)
        })
        .collect();
    for (_, entry) in ini.section("api_keys").into_iter().flatten() {
        let problem = |problem: String| {
            ConfigError::invalid(
                entry.origin.clone(),
                "api_keys",
                "<key>",
                "<hidden>",
                problem,
            )
        };
        let value = ini.interpolate("api_keys", &entry.value).map_err(problem)?;
        if keys.iter().any(|k| k.key == entry.written) {
            return Err(problem(
                "this key is given twice (in `api_keys` or earlier in [api_keys])".to_owned(),
            ));
        }
        let access = parse_key_access(&value).map_err(problem)?;
        keys.push(ApiKey {
            key: entry.written.clone(),
            access,
            origin: entry.origin.place(),
        });
    }
    Ok(keys)
}

/// What one `[api_keys]` value grants.
fn parse_key_access(value: &str) -> Result<KeyAccess, String> {
    let words: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Err(
            "expected the projects this key may use (names or ids, `*` for every \
                    project, `ro:` before one for read-only), or `admin`"
                .to_owned(),
        );
    }
    if words.contains(&"admin") {
        return if words.len() == 1 {
            Ok(KeyAccess::Admin)
        } else {
            Err("admin already reaches every project: it stands alone".to_owned())
        };
    }
    // Nothing of the value is quoted: a key with a ":" or "=" is cut there, and the rest of it
    // is in the value.
    if words.iter().any(|w| w.starts_with(['#', ';'])) {
        return Err(
            "a comment (# or ;) after the projects is kept in the value by configparser: \
                    put comments on lines of their own"
                .to_owned(),
        );
    }
    if words.iter().any(|w| w.contains('=')) {
        return Err(
            "an API key cannot contain \":\" or \"=\" (the line is cut at the first of \
                    them)"
                .to_owned(),
        );
    }
    let mut grants = Vec::new();
    for word in words {
        let (write, project) = match word.strip_prefix("ro:") {
            Some(rest) => (false, rest),
            None => (true, word),
        };
        let project = match project {
            "*" => None,
            "" => return Err("\"ro:\" with nothing after it names no project".to_owned()),
            name if name.contains(':') => {
                return Err(
                    "an API key cannot contain \":\" or \"=\", nor a project listed \
                            here a \":\""
                        .to_owned(),
                );
            }
            name if crate::names::is_safe(name) => Some(name.to_owned()),
            _ => {
                return Err(
                    "a project name has a \"/\", \"\\\" or control character, or is too long"
                        .to_owned(),
                );
            }
        };
        grants.push(ProjectGrant { project, write });
    }
    Ok(KeyAccess::Projects(grants))
}

/// A non-negative integer as Python's `int()` reads it.
fn non_negative(s: &Setting) -> Result<usize, ConfigError> {
    parse_python_int(&s.value)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| s.invalid("expected a non-negative integer"))
}

/// Python's `int(str)`: surrounding whitespace, an optional sign, decimal digits with single
/// underscores between them.
fn parse_python_int(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = python_digits(digits)?;
    let n: i128 = digits.parse().ok()?;
    Some(if negative { -n } else { n })
}

/// `s` without its underscores, if it is digits with single underscores between digits.
fn python_digits(s: &str) -> Option<String> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    s.chars()
        .all(|c| c.is_ascii_digit() || c == '_')
        .then(|| s.replace('_', ""))
}

/// Python's `float(str)` for the forms people write: `5`, `5.0`, `.5`, `1e3`, `1_000.5`.
fn parse_python_float(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // Underscores are only allowed between digits.
    let bytes = s.as_bytes();
    let mut cleaned = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c == '_' {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + 1).copied();
            if !(before.is_some_and(|b| b.is_ascii_digit())
                && after.is_some_and(|b| b.is_ascii_digit()))
            {
                return None;
            }
        } else {
            cleaned.push(c);
        }
    }
    cleaned.parse().ok()
}

/// Python's `ConfigParser.getboolean`.
fn parse_python_bool(s: &str) -> Option<bool> {
    match s.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `items_dir`: empty → disabled; a URL whose scheme (as Python's `urlsplit` finds it) is not
/// `file` → passed through; otherwise a local directory.
fn parse_items_dir(value: &str, cwd: &Path) -> Result<ItemsDir, String> {
    if value.is_empty() {
        return Ok(ItemsDir::Disabled);
    }
    match url_scheme(value) {
        None => Ok(ItemsDir::Local(absolute(cwd, Path::new(value)))),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
            let rest = match rest.strip_prefix("//") {
                // Skip the authority (host); Scrapyd uses only the path.
                Some(after) => &after[after.find(['/', '?', '#']).unwrap_or(after.len())..],
                None => rest,
            };
            let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
            if path.is_empty() {
                return Err("a file: URL needs a path, e.g. file:///var/lib/scrapyd/items".into());
            }
            Ok(ItemsDir::Local(absolute(cwd, Path::new(path))))
        }
        Some(_) => Ok(ItemsDir::Url(value.to_owned())),
    }
}

/// The scheme and the rest of `url`, as Python's `urlsplit` splits them: letters, digits, `+`,
/// `-` and `.` before the first `:`, starting with a letter.
fn url_scheme(url: &str) -> Option<(&str, &str)> {
    let colon = url.find(':')?;
    let scheme = &url[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme, &url[colon + 1..]))
}

/// `path` made absolute against `cwd`, with `.` components removed (`..` is kept, as the
/// filesystem resolves it).
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = cwd.join(path);
    joined
        .components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect()
}

/// A relative interpreter path containing `/` is made absolute against `cwd`; a bare command
/// name (`python3`) is left for `PATH` lookup.
fn resolve_command(cwd: &Path, command: String) -> String {
    let path = Path::new(&command);
    if command.contains('/')
        && path.is_relative()
        && let Some(resolved) = absolute(cwd, path).to_str()
    {
        return resolved.to_owned();
    }
    command
}

/// The host name, as Python's `socket.gethostname()` (`localhost` if it cannot be read).
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // --------------------------------------------------------------------------------------------
    // Helpers

    const FILE: &str = "/etc/scrapyd/scrapyd.conf";

    fn parse(text: &str) -> Ini {
        parse_ini(text, Some(Path::new(FILE))).unwrap()
    }

    /// The merged raw value of `option` in `section` (with `[DEFAULT]` fallback).
    fn raw(ini: &Ini, section: &str, option: &str) -> Option<String> {
        ini.lookup(section, option).map(|entry| entry.value.clone())
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match parse_ini(text, Some(Path::new(FILE))) {
            Err(ConfigError::Syntax { line, message, .. }) => (line, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    /// The built-in defaults overlaid with `text` (read from [`FILE`]), cwd `/srv`.
    fn config_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut ini = builtin_ini();
        ini.merge(parse_ini(text, Some(Path::new(FILE)))?, None);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        build(&ini, &env, Path::new("/srv"), Vec::new())
    }

    fn cfg(text: &str) -> Config {
        config_env(text, &[]).unwrap()
    }

    fn error(text: &str) -> String {
        match config_env(text, &[]) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn invalid(err: ConfigError) -> InvalidValue {
        match err {
            ConfigError::Invalid(invalid) => *invalid,
            other => panic!("expected ConfigError::Invalid, got {other:?}"),
        }
    }

    /// A temporary tree: `root/` (with an empty `scrapy.cfg` so no file outside the tree is
    /// found), `root/etc` as the system directory, `root/home`, and `root/work` as the cwd.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::Builder::new()
                .prefix("scrapyd-rs-config-")
                .tempdir_in(std::env::temp_dir())
                .unwrap();
            let fixture = Fixture { dir };
            fixture.write("scrapy.cfg", "");
            std::fs::create_dir_all(fixture.path("work")).unwrap();
            std::fs::create_dir_all(fixture.path("home")).unwrap();
            fixture
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }

        fn opts(&self) -> LoadOptions {
            LoadOptions {
                cwd: self.path("work"),
                home: Some(self.path("home")),
                system: true,
                extra_files: Vec::new(),
                env: Vec::new(),
            }
        }

        fn load(&self, opts: &LoadOptions) -> Result<Config, ConfigError> {
            load_from(opts, &self.path("etc"))
        }
    }

    // --------------------------------------------------------------------------------------------
    // INI parsing

    #[test]
    fn parse_both_delimiters_and_first_one_wins() {
        let ini = parse("[s]\na = 1\nb: 2\nc = x:y\nd: x=y\ne=\nf :\n");
        assert_eq!(raw(&ini, "s", "a").as_deref(), Some("1"));
        assert_eq!(raw(&ini, "s", "b").as_deref(), Some("2"));
        assert_eq!(raw(&ini, "s", "c").as_deref(), Some("x:y"));
        assert_eq!(raw(&ini, "s", "d").as_deref(), Some("x=y"));
        assert_eq!(raw(&ini, "s", "e").as_deref(), Some(""));
        assert_eq!(raw(&ini, "s", "f").as_deref(), Some(""));
    }

    #[test]
    fn parse_names_lowercased_values_stripped_sections_case_sensitive() {
        let ini = parse("[Scrapyd]\n  Max_Proc   =   4  \n[scrapyd]\nHTTP_PORT=1\n");
        assert_eq!(raw(&ini, "Scrapyd", "max_proc").as_deref(), Some("4"));
        assert_eq!(raw(&ini, "scrapyd", "max_proc"), None);
        assert_eq!(raw(&ini, "scrapyd", "http_port").as_deref(), Some("1"));
        assert_eq!(ini.sections.len(), 2);
    }

    #[test]
    fn parse_comments_only_as_whole_lines() {
        let ini = parse(
            "# top\n; top\n[s]\n  # indented comment\n\t; tab comment\n\
             password = a#b\nother = x ; not a comment\nhash = # value\n",
        );
        let options = ini.section("s").unwrap();
        assert_eq!(options.len(), 3);
        assert_eq!(raw(&ini, "s", "password").as_deref(), Some("a#b"));
        assert_eq!(
            raw(&ini, "s", "other").as_deref(),
            Some("x ; not a comment")
        );
        assert_eq!(raw(&ini, "s", "hash").as_deref(), Some("# value"));
    }

    #[test]
    fn parse_continuation_lines() {
        let ini = parse(
            "[s]\nlist = first\n  second\n\n\tthird\n  # comment inside is dropped\n    fourth\n\n\n\
             next = 1\n",
        );
        assert_eq!(
            raw(&ini, "s", "list").as_deref(),
            Some("first\nsecond\n\nthird\nfourth")
        );
        assert_eq!(raw(&ini, "s", "next").as_deref(), Some("1"));
        // The origin is the option's first line.
        let entry = ini.lookup("s", "list").unwrap();
        assert_eq!(
            entry.origin,
            Origin::File {
                path: PathBuf::from(FILE),
                line: 2
            }
        );
    }

    #[test]
    fn parse_continuation_is_relative_to_the_option_indent() {
        // An indented option line: a line at the same indent is a new option, deeper continues.
        let ini = parse("[s]\n  a = 1\n  b = 2\n    more\nc = 3\n");
        assert_eq!(raw(&ini, "s", "a").as_deref(), Some("1"));
        assert_eq!(raw(&ini, "s", "b").as_deref(), Some("2\nmore"));
        assert_eq!(raw(&ini, "s", "c").as_deref(), Some("3"));
        // An empty value can be continued too.
        let ini = parse("[s]\na =\n  x\n  y\n");
        assert_eq!(raw(&ini, "s", "a").as_deref(), Some("\nx\ny"));
    }

    #[test]
    fn parse_section_header_ignores_text_after_the_last_bracket() {
        let ini = parse("[scrapyd] ; comment\na = 1\n[x]y]z\nb = 2\n[ spaced ]\nc = 3\n");
        assert_eq!(raw(&ini, "scrapyd", "a").as_deref(), Some("1"));
        assert_eq!(raw(&ini, "x]y", "b").as_deref(), Some("2"));
        assert_eq!(raw(&ini, " spaced ", "c").as_deref(), Some("3"));
    }

    #[test]
    fn parse_default_section_is_visible_everywhere_and_may_repeat() {
        let ini = parse("[DEFAULT]\nx = 1\n[s]\ny = 2\n[DEFAULT]\nz = 3\n[t]\nx = own\n");
        assert_eq!(raw(&ini, "s", "x").as_deref(), Some("1"));
        assert_eq!(raw(&ini, "s", "z").as_deref(), Some("3"));
        assert_eq!(raw(&ini, "t", "x").as_deref(), Some("own"));
        assert_eq!(raw(&ini, "nosuch", "x").as_deref(), Some("1"));
        // [default] is an ordinary section.
        let ini = parse("[default]\nx = 1\n");
        assert_eq!(raw(&ini, "s", "x"), None);
    }

    #[test]
    fn parse_line_endings_and_bom() {
        let ini = parse("\u{feff}[s]\r\na = 1\r\n  2\rb = 3");
        assert_eq!(raw(&ini, "s", "a").as_deref(), Some("1\n2"));
        assert_eq!(raw(&ini, "s", "b").as_deref(), Some("3"));
    }

    #[test]
    fn parse_error_option_before_section() {
        let (line, message) = syntax_error("\n# comment\na = 1\n[s]\n");
        assert_eq!(line, 3);
        assert!(message.contains("before any [section] header"), "{message}");
        let err = parse_ini("a = 1\n", Some(Path::new(FILE))).unwrap_err();
        assert!(
            err.to_string().starts_with("/etc/scrapyd/scrapyd.conf:1: "),
            "{err}"
        );
    }

    #[test]
    fn parse_error_duplicate_section() {
        let (line, message) = syntax_error("[s]\na = 1\n[t]\n[s]\n");
        assert_eq!(line, 4);
        assert!(
            message.contains("section [s] already appeared"),
            "{message}"
        );
    }

    #[test]
    fn parse_error_duplicate_option() {
        let (line, message) = syntax_error("[s]\na = 1\n\nA : 2\n");
        assert_eq!(line, 4);
        assert!(
            message.contains("option \"a\" already appeared in [s]"),
            "{message}"
        );
        let (line, _) = syntax_error("[DEFAULT]\nx = 1\n[s]\n[DEFAULT]\nx = 2\n");
        assert_eq!(line, 5);
        // The same option in different sections is fine.
        parse("[s]\na = 1\n[t]\na = 2\n[DEFAULT]\na = 3\n");
    }

    #[test]
    fn parse_error_bad_lines() {
        for (text, line) in [
            ("[s]\na = 1\njust text\n", 3),
            ("[s]\n[unclosed\n", 2),
            ("[s]\n[]\n", 2),
            ("[s]\n= value\n", 2),
            ("[s]\n  : value\n", 2),
            // After a header, an indented line is not a continuation.
            ("[s]\n    orphan\n", 2),
        ] {
            let (got, message) = syntax_error(text);
            assert_eq!(got, line, "{text:?}: {message}");
        }
    }

    #[test]
    fn merge_overlays_later_files() {
        let mut ini = parse("[s]\na = 1\nb = 2\n[t]\nx = 1\n");
        ini.merge(parse("[s]\nb = 3\nc = 4\n[s2]\ny = 1\n"), None);
        let names: Vec<&str> = ini
            .section("s")
            .unwrap()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(raw(&ini, "s", "b").as_deref(), Some("3"));
        let sections: Vec<&str> = ini.sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(sections, ["s", "t", "s2"]);
        // `only` keeps just the named sections.
        ini.merge(
            parse("[DEFAULT]\nd = 1\n[s]\na = 9\n[t]\nx = 9\n"),
            Some(&["t"]),
        );
        assert_eq!(raw(&ini, "s", "a").as_deref(), Some("1"));
        assert_eq!(raw(&ini, "t", "x").as_deref(), Some("9"));
        assert_eq!(raw(&ini, "s", "d"), None);
    }

    // --------------------------------------------------------------------------------------------
    // Interpolation

    #[test]
    fn interpolation_resolves_like_python() {
        let ini = parse(
            "[DEFAULT]\nbase = /var/lib\nfrom_default = %(own)s!\n\
             [s]\nown = mine\nlogs = %(base)s/logs\npct = 100%%\nnested = %(logs)s/x\n\
             upper = %(BASE)s\nback = %(from_default)s\nliteral = %%(base)s\n",
        );
        let get = |option: &str| ini.interpolate("s", &raw(&ini, "s", option).unwrap());
        assert_eq!(get("logs").unwrap(), "/var/lib/logs");
        assert_eq!(get("pct").unwrap(), "100%");
        assert_eq!(get("nested").unwrap(), "/var/lib/logs/x");
        assert_eq!(get("upper").unwrap(), "/var/lib");
        // A [DEFAULT] value's references resolve in the section being read.
        assert_eq!(get("back").unwrap(), "mine!");
        assert_eq!(get("literal").unwrap(), "%(base)s");
    }

    #[test]
    fn interpolation_errors() {
        let ini = parse(
            "[s]\nmissing = %(nope)s\nbare = 100%\nletter = %d\nunclosed = %(a\n\
             wrong_type = %(a)d\nempty = %()s\na = %(b)s\nb = %(a)s\n",
        );
        let get = |option: &str| ini.interpolate("s", &raw(&ini, "s", option).unwrap());
        assert!(get("missing").unwrap_err().contains("\"nope\""));
        assert!(get("bare").unwrap_err().contains("'%' must be followed"));
        assert!(get("letter").unwrap_err().contains("'%' must be followed"));
        assert!(
            get("unclosed")
                .unwrap_err()
                .contains("bad interpolation reference")
        );
        assert!(
            get("wrong_type")
                .unwrap_err()
                .contains("bad interpolation reference")
        );
        assert!(
            get("empty")
                .unwrap_err()
                .contains("bad interpolation reference")
        );
        assert!(get("a").unwrap_err().contains("cycle"));
    }

    #[test]
    fn interpolation_depth_limit_is_ten() {
        let mut text = String::from("[s]\nv0 = end\n");
        for i in 1..=11 {
            text.push_str(&format!("v{i} = %(v{})s\n", i - 1));
        }
        let ini = parse(&text);
        let get = |option: &str| ini.interpolate("s", &raw(&ini, "s", option).unwrap());
        assert_eq!(get("v9").unwrap(), "end");
        assert_eq!(get("v10").unwrap(), "end");
        assert!(get("v11").is_err());
    }

    #[test]
    fn interpolation_error_in_scrapyd_names_file_and_option() {
        let err = error("[scrapyd]\nlogs_dir = %(nope)s/logs\n");
        assert!(
            err.starts_with(
                "/etc/scrapyd/scrapyd.conf: [scrapyd] logs_dir = \"%(nope)s/logs\": interpolation"
            ),
            "{err}"
        );
        assert!(err.ends_with("(line 2)"), "{err}");
        // Unused options of other sections are never interpolated (as in Python).
        cfg("[deploy]\nurl = 100%\n");
    }

    #[test]
    fn interpolation_is_late_bound_across_files() {
        let fx = Fixture::new();
        fx.write(
            "work/scrapyd.conf",
            "[DEFAULT]\nbase = /first\n[scrapyd]\nlogs_dir = %(base)s/logs\n",
        );
        fx.write("home/.scrapyd.conf", "[DEFAULT]\nbase = /second\n");
        let config = fx.load(&fx.opts()).unwrap();
        assert_eq!(config.logs_dir, Some(PathBuf::from("/second/logs")));
    }

    // --------------------------------------------------------------------------------------------
    // Defaults and loading

    #[test]
    fn defaults_are_scrapyd_1_6_defaults() {
        let config = Config::defaults(Path::new("/srv/scrapyd"));
        assert_eq!(config.bind_address, "127.0.0.1");
        assert_eq!(config.http_port, 6800);
        assert_eq!(config.unix_socket_path, None);
        assert_eq!(config.username, "");
        assert_eq!(config.password, "");
        assert_eq!(config.max_proc, 0);
        assert_eq!(config.max_proc_per_cpu, 4);
        assert_eq!(config.finished_to_keep, 100);
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.logs_dir, Some(PathBuf::from("/srv/scrapyd/logs")));
        assert_eq!(config.items_dir, ItemsDir::Disabled);
        assert_eq!(config.jobs_dir, None);
        assert_eq!(config.eggs_dir, PathBuf::from("/srv/scrapyd/eggs"));
        assert_eq!(
            config.dbs_dir,
            DbsDir::Dir(PathBuf::from("/srv/scrapyd/dbs"))
        );
        assert_eq!(config.jobs_to_keep, 5);
        assert_eq!(config.node_name, hostname());
        assert!(!config.node_name.is_empty());
        assert_eq!(config.prefix_header, "x-forwarded-prefix");
        assert!(!config.debug);
        assert_eq!(config.python, "python3");
        let expected: Vec<(String, Service)> = [
            "schedule",
            "cancel",
            "status",
            "addversion",
            "listprojects",
            "listversions",
            "listspiders",
            "delproject",
            "delversion",
            "listjobs",
            "daemonstatus",
            "listnodes",
        ]
        .into_iter()
        .zip(Service::ALL)
        .map(|(name, service)| (format!("{name}.json"), service))
        .collect();
        assert_eq!(config.services, expected);
        assert!(config.settings.is_empty());
        assert!(config.sources.is_empty());
        assert!(config.tcp_enabled());
        assert!(!config.auth_enabled());
        assert_eq!(config.items_local(), None);
    }

    #[test]
    fn embedded_defaults_cover_every_option() {
        let ini = builtin_ini();
        let options = ini.section("scrapyd").unwrap();
        for option in VALUE_OPTIONS.iter().filter(|o| **o != "node_name") {
            assert!(find_option(options, option).is_some(), "{option}");
        }
        for (option, accepted) in CLASS_OPTIONS {
            assert_eq!(find_option(options, option).unwrap().value, accepted[0]);
        }
        assert_eq!(ini.section("services").unwrap().len(), 12);
        for service in Service::ALL {
            assert_eq!(
                Service::from_class_path(service.class_path()),
                Some(service)
            );
        }
    }

    #[test]
    fn example_file_lists_every_option_with_its_default() {
        let text = include_str!("../scrapyd.conf.example");
        let mut ini = builtin_ini();
        ini.merge(
            parse_ini(text, Some(Path::new("scrapyd.conf.example"))).unwrap(),
            None,
        );
        let config = build(&ini, &[], Path::new("/srv"), Vec::new()).unwrap();
        assert_eq!(config, Config::defaults(Path::new("/srv")));
        let example = parse_ini(text, None).unwrap();
        let options = example.section("scrapyd").unwrap();
        for option in VALUE_OPTIONS
            .iter()
            .chain(CLASS_OPTIONS.iter().map(|(o, _)| o))
        {
            let listed =
                find_option(options, option).is_some() || text.contains(&format!("\n# {option} "));
            assert!(listed, "{option} missing from scrapyd.conf.example");
        }
        assert_eq!(example.section("services").unwrap().len(), 12);
        assert!(example.section("settings").unwrap().is_empty());
    }

    #[test]
    fn load_without_files_gives_defaults() {
        let fx = Fixture::new();
        let config = fx.load(&fx.opts()).unwrap();
        let mut expected = Config::defaults(&fx.path("work"));
        expected.sources = vec![fx.path("scrapy.cfg")];
        assert_eq!(config, expected);
    }

    #[test]
    fn load_layers_in_order_and_later_wins() {
        let fx = Fixture::new();
        let layer = |n: usize| format!("[scrapyd]\nhttp_port = {n}\nnode_name = layer{n}\n");
        let system = fx.write("etc/scrapyd.conf", &format!("{}max_proc = 1\n", layer(1)));
        let conf_b = fx.write(
            "etc/conf.d/b.conf",
            &format!("{}jobs_to_keep = 7\n", layer(3)),
        );
        let conf_a = fx.write("etc/conf.d/a.conf", &format!("{}max_proc = 2\n", layer(2)));
        let cwd = fx.write("work/scrapyd.conf", &format!("{}debug = on\n", layer(4)));
        let home = fx.write("home/.scrapyd.conf", &format!("{}username = u\n", layer(5)));
        let cfg = fx.write("scrapy.cfg", &format!("{}password = p\n", layer(6)));
        let extra1 = fx.write(
            "extra1.conf",
            &format!("{}finished_to_keep = 3\n", layer(7)),
        );
        let extra2 = fx.write("extra2.conf", &layer(8));
        let mut opts = fx.opts();
        opts.extra_files = vec![extra1.clone(), extra2.clone()];

        let config = fx.load(&opts).unwrap();
        assert_eq!(
            config.sources,
            [system, conf_a, conf_b, cwd, home, cfg, extra1, extra2]
        );
        assert_eq!(config.http_port, 8);
        assert_eq!(config.node_name, "layer8");
        assert_eq!(config.max_proc, 2);
        assert_eq!(config.jobs_to_keep, 7);
        assert!(config.debug);
        assert!(config.auth_enabled());
        assert_eq!(config.finished_to_keep, 3);

        // Each layer beats the ones before it.
        opts.extra_files.pop();
        assert_eq!(fx.load(&opts).unwrap().http_port, 7);
        opts.extra_files.clear();
        assert_eq!(fx.load(&opts).unwrap().http_port, 6);
        fx.write("scrapy.cfg", "");
        assert_eq!(fx.load(&opts).unwrap().http_port, 5);
        opts.home = None;
        assert_eq!(fx.load(&opts).unwrap().http_port, 4);
        std::fs::remove_file(fx.path("work/scrapyd.conf")).unwrap();
        assert_eq!(fx.load(&opts).unwrap().http_port, 3);
        opts.system = false;
        let config = fx.load(&opts).unwrap();
        assert_eq!(config.http_port, 6800);
        assert_eq!(config.sources, [fx.path("scrapy.cfg")]);
    }

    #[test]
    fn load_conf_d_skips_subdirectories_and_reads_dot_files() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.path("etc/conf.d/sub.d")).unwrap();
        let hidden = fx.write("etc/conf.d/.early", "[scrapyd]\nmax_proc = 9\n");
        let late = fx.write("etc/conf.d/z", "[scrapyd]\nmax_proc_per_cpu = 9\n");
        let config = fx.load(&fx.opts()).unwrap();
        assert_eq!(config.sources, [hidden, late, fx.path("scrapy.cfg")]);
        assert_eq!(config.max_proc, 9);
        assert_eq!(config.max_proc_per_cpu, 9);
    }

    #[test]
    fn load_scrapy_cfg_closest_upward_and_only_scrapyd_and_settings() {
        let fx = Fixture::new();
        fx.write("scrapy.cfg", "[settings]\nfar = far.settings\n");
        let near = fx.write(
            "a/scrapy.cfg",
            "[DEFAULT]\nmax_proc = 5\n\
             [settings]\ndefault = myproject.settings\n\
             [deploy]\nurl = http://localhost:6800/\nproject = myproject\nusername = deployer\n\
             [deploy:other]\nurl = %(missing)s 100%\n\
             [services]\nschedule.json =\n\
             [scrapyd]\nhttp_port = 6900\n",
        );
        let mut opts = fx.opts();
        opts.cwd = fx.path("a/b/c");
        std::fs::create_dir_all(&opts.cwd).unwrap();
        let config = fx.load(&opts).unwrap();
        assert_eq!(config.sources, [near]);
        assert_eq!(config.http_port, 6900);
        assert_eq!(
            config.settings,
            [("default".into(), "myproject.settings".into())]
        );
        assert_eq!(config.username, "");
        assert_eq!(config.max_proc, 0);
        assert_eq!(config.services.len(), 12);

        // Its [scrapyd] section is validated.
        fx.write(
            "a/scrapy.cfg",
            "[scrapyd]\nbogus = 1\n[deploy]\nbogus = 1\n",
        );
        let err = invalid(fx.load(&opts).unwrap_err());
        assert_eq!(err.option, "bogus");
        assert_eq!(
            err.origin,
            Origin::File {
                path: fx.path("a/scrapy.cfg"),
                line: 2
            }
        );
        // It must still be a well-formed file.
        fx.write("a/scrapy.cfg", "[deploy]\nurl = 1\n[deploy]\n");
        assert!(matches!(
            fx.load(&opts),
            Err(ConfigError::Syntax { line: 3, .. })
        ));
    }

    #[test]
    fn load_missing_standard_files_are_skipped_but_extra_files_required() {
        let fx = Fixture::new();
        let mut opts = fx.opts();
        opts.home = Some(fx.path("no/such/home"));
        opts.extra_files = vec![fx.path("missing.conf")];
        let err = fx.load(&opts).unwrap_err();
        assert!(matches!(&err, ConfigError::NotFound { path } if *path == fx.path("missing.conf")));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: configuration file not found",
                fx.path("missing.conf").display()
            )
        );
        opts.extra_files = vec![fx.path("work")];
        assert!(matches!(fx.load(&opts), Err(ConfigError::Read { .. })));
        opts.extra_files = vec![PathBuf::from("relative.conf")];
        let relative = fx.write("work/relative.conf", "[scrapyd]\nmax_proc = 2\n");
        let config = fx.load(&opts).unwrap();
        assert_eq!(config.max_proc, 2);
        assert_eq!(config.sources.last(), Some(&relative));
    }

    #[test]
    fn load_rejects_files_that_are_not_utf8() {
        let fx = Fixture::new();
        std::fs::write(
            fx.path("work/scrapyd.conf"),
            b"[scrapyd]\nusername = \xff\n",
        )
        .unwrap();
        let err = fx.load(&fx.opts()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn load_syntax_errors_carry_path_and_line() {
        let fx = Fixture::new();
        fx.write(
            "home/.scrapyd.conf",
            "[scrapyd]\nhttp_port = 1\nhttp_port = 2\n",
        );
        let err = fx.load(&fx.opts()).unwrap_err();
        let prefix = format!("{}:3: ", fx.path("home/.scrapyd.conf").display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
    }

    #[test]
    fn load_options_from_process() {
        let opts = LoadOptions::from_process(vec![PathBuf::from("x.conf")]).unwrap();
        assert!(opts.cwd.is_absolute());
        assert!(opts.system);
        assert_eq!(opts.extra_files, [PathBuf::from("x.conf")]);
        assert!(
            opts.env
                .iter()
                .all(|(name, _)| name.starts_with("SCRAPYD_"))
        );
    }

    // --------------------------------------------------------------------------------------------
    // Environment overrides

    #[test]
    fn env_overrides_win_and_empty_ones_are_ignored() {
        let text = "[scrapyd]\nbind_address = 10.0.0.1\nhttp_port = 7000\nusername = file\n\
                    password = file\nunix_socket_path = /run/file.sock\n";
        let config = config_env(
            text,
            &[
                ("SCRAPYD_BIND_ADDRESS", "0.0.0.0"),
                ("SCRAPYD_HTTP_PORT", "7001"),
                ("SCRAPYD_USERNAME", "env"),
                ("SCRAPYD_PASSWORD", "%secret"),
                ("SCRAPYD_UNIX_SOCKET_PATH", "run/env.sock"),
                ("SCRAPYD_MAX_PROC", "9"),
            ],
        )
        .unwrap();
        assert_eq!(config.bind_address, "0.0.0.0");
        assert_eq!(config.http_port, 7001);
        assert_eq!(config.username, "env");
        // Environment values are not interpolated.
        assert_eq!(config.password, "%secret");
        assert_eq!(
            config.unix_socket_path,
            Some(PathBuf::from("/srv/run/env.sock"))
        );
        assert_eq!(config.max_proc, 0);

        let empty: Vec<(&str, &str)> = ENV_OVERRIDES.iter().map(|(_, var)| (*var, "")).collect();
        let config = config_env(text, &empty).unwrap();
        assert_eq!(config.bind_address, "10.0.0.1");
        assert_eq!(config.http_port, 7000);
        assert_eq!(config.username, "file");
        assert_eq!(config.password, "file");
        assert_eq!(
            config.unix_socket_path,
            Some(PathBuf::from("/run/file.sock"))
        );

        // The last occurrence wins.
        let config = config_env(
            "",
            &[("SCRAPYD_HTTP_PORT", "1"), ("SCRAPYD_HTTP_PORT", "2")],
        )
        .unwrap();
        assert_eq!(config.http_port, 2);
    }

    #[test]
    fn env_override_bypasses_a_bad_file_value() {
        // As `os.getenv(X) or config.getint(...)`: the file value is not read at all.
        let config = config_env(
            "[scrapyd]\nhttp_port = %(nope)s\n",
            &[("SCRAPYD_HTTP_PORT", "6801")],
        )
        .unwrap();
        assert_eq!(config.http_port, 6801);
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = config_env("", &[("SCRAPYD_HTTP_PORT", "http")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SCRAPYD_HTTP_PORT: [scrapyd] http_port = \"http\": \
             expected a port number from 0 to 65535"
        );
        let err = invalid(config_env("", &[("SCRAPYD_USERNAME", "a:b")]).unwrap_err());
        assert_eq!(err.origin, Origin::Env("SCRAPYD_USERNAME".into()));
        assert_eq!(err.option, "username");
    }

    #[test]
    fn env_through_load() {
        let fx = Fixture::new();
        fx.write("work/scrapyd.conf", "[scrapyd]\nhttp_port = 7000\n");
        let mut opts = fx.opts();
        opts.env = vec![("SCRAPYD_HTTP_PORT".into(), "7100".into())];
        assert_eq!(fx.load(&opts).unwrap().http_port, 7100);
    }

    // --------------------------------------------------------------------------------------------
    // Validation of [scrapyd]

    #[test]
    fn error_display_names_file_option_value_and_problem() {
        assert_eq!(
            error("[scrapyd]\nmax_proc = abc\n"),
            "/etc/scrapyd/scrapyd.conf: [scrapyd] max_proc = \"abc\": \
             expected a non-negative integer (line 2)"
        );
    }

    #[test]
    fn integers_are_non_negative_python_ints() {
        for option in [
            "max_proc",
            "max_proc_per_cpu",
            "finished_to_keep",
            "jobs_to_keep",
        ] {
            for bad in ["abc", "-1", "1.5", "", "1__0", "_1", "0x10"] {
                let err = invalid(
                    config_env(&format!("[scrapyd]\n{option} = {bad}\n"), &[]).unwrap_err(),
                );
                assert_eq!(err.option, option);
                assert_eq!(err.problem, "expected a non-negative integer");
            }
        }
        let config = cfg(
            "[scrapyd]\nmax_proc = +3\nmax_proc_per_cpu = 1_0\njobs_to_keep = 007\nfinished_to_keep = -0\n",
        );
        assert_eq!(config.max_proc, 3);
        assert_eq!(config.max_proc_per_cpu, 10);
        assert_eq!(config.jobs_to_keep, 7);
        assert_eq!(config.finished_to_keep, 0);
    }

    #[test]
    fn http_port_range() {
        for bad in ["65536", "-1", "x", ""] {
            let err = error(&format!("[scrapyd]\nhttp_port = {bad}\n"));
            assert!(
                err.contains("expected a port number from 0 to 65535"),
                "{err}"
            );
        }
        let config = cfg("[scrapyd]\nhttp_port = 0\n");
        assert_eq!(config.http_port, 0);
        assert!(!config.tcp_enabled());
        assert_eq!(cfg("[scrapyd]\nhttp_port = 65535\n").http_port, 65535);
        assert!(!cfg("[scrapyd]\nbind_address =\n").tcp_enabled());
    }

    #[test]
    fn poll_interval_is_positive_seconds() {
        for bad in ["0", "-1", "0.0", "abc", "nan", "inf", "", "1e400"] {
            let err = error(&format!("[scrapyd]\npoll_interval = {bad}\n"));
            assert!(
                err.contains("expected a number of seconds greater than 0"),
                "{err}"
            );
        }
        for (good, expected) in [
            ("0.5", Duration::from_millis(500)),
            ("2", Duration::from_secs(2)),
            ("1e1", Duration::from_secs(10)),
            (".25", Duration::from_millis(250)),
            ("1_0", Duration::from_secs(10)),
        ] {
            assert_eq!(
                cfg(&format!("[scrapyd]\npoll_interval = {good}\n")).poll_interval,
                expected
            );
        }
    }

    #[test]
    fn debug_is_a_python_boolean() {
        for (value, expected) in [
            ("1", true),
            ("yes", true),
            ("TRUE", true),
            ("On", true),
            ("0", false),
            ("no", false),
            ("False", false),
            ("OFF", false),
        ] {
            assert_eq!(
                cfg(&format!("[scrapyd]\ndebug = {value}\n")).debug,
                expected
            );
        }
        let err = error("[scrapyd]\ndebug = maybe\n");
        assert!(err.contains("expected a boolean"), "{err}");
    }

    #[test]
    fn username_must_not_contain_a_colon() {
        let err =
            invalid(config_env("[scrapyd]\nusername = a:b\npassword = c\n", &[]).unwrap_err());
        assert_eq!(err.option, "username");
        assert_eq!(
            err.problem,
            "The `username` option contains illegal character ':'"
        );
        let config = cfg("[scrapyd]\nusername = a\npassword = b:c\n");
        assert!(config.auth_enabled());
        assert_eq!(config.password, "b:c");
        assert!(
            !config_env("[scrapyd]\nusername = a\n", &[])
                .unwrap()
                .auth_enabled()
        );
        assert!(
            !config_env("[scrapyd]\npassword = a\n", &[])
                .unwrap()
                .auth_enabled()
        );
    }

    #[test]
    fn unknown_options_are_errors() {
        let err = invalid(config_env("[scrapyd]\n\nmax_procs = 4\n", &[]).unwrap_err());
        assert_eq!(err.option, "max_procs");
        assert_eq!(err.problem, "unknown option");
        assert_eq!(
            err.origin,
            Origin::File {
                path: PathBuf::from(FILE),
                line: 3
            }
        );
        for old in ["logs_to_keep", "items_to_keep"] {
            let err = error(&format!("[scrapyd]\n{old} = 5\n"));
            assert!(
                err.contains(&format!("`{old}` was renamed `jobs_to_keep`")),
                "{err}"
            );
        }
        // Options reaching [scrapyd] only through [DEFAULT] are fine, and unknown sections too.
        cfg("[DEFAULT]\nbase = /x\nwhatever = 1\n[other]\nanything = goes\n");
    }

    #[test]
    fn default_section_values_apply_to_scrapyd() {
        let config = cfg("[DEFAULT]\nnode_name = from-default\nmax_proc = 3\n");
        assert_eq!(config.node_name, "from-default");
        // The embedded [scrapyd] section sets max_proc, and a section value beats [DEFAULT].
        assert_eq!(config.max_proc, 0);
    }

    #[test]
    fn class_path_options_accept_only_scrapyd_classes() {
        let all = "[scrapyd]\napplication = scrapyd.app.application\n\
                   launcher = scrapyd.launcher.Launcher\n\
                   eggstorage = scrapyd.eggstorage.FilesystemEggStorage\n\
                   jobstorage = scrapyd.jobstorage.SqliteJobStorage\n\
                   spiderqueue = scrapyd.spiderqueue.SqliteSpiderQueue\n\
                   poller = scrapyd.poller.QueuePoller\nwebroot = scrapyd.website.Root\n\
                   runner = scrapyd.runner\n";
        cfg(all);
        cfg("[scrapyd]\njobstorage = scrapyd.jobstorage.MemoryJobStorage\n");
        for (option, accepted) in CLASS_OPTIONS {
            let err = invalid(
                config_env(&format!("[scrapyd]\n{option} = myproject.Custom\n"), &[]).unwrap_err(),
            );
            assert_eq!(err.option, option);
            assert_eq!(err.value, "myproject.Custom");
            assert!(
                err.problem.contains("cannot load Python classes"),
                "{}",
                err.problem
            );
            assert!(err.problem.contains(accepted[0]), "{}", err.problem);
        }
    }

    #[test]
    fn directories_resolve_against_cwd() {
        let config = cfg(
            "[scrapyd]\nlogs_dir = ./var/logs\njobs_dir = ../jobs\neggs_dir = /abs/eggs\n\
             dbs_dir = dbs/\nunix_socket_path = run/scrapyd.sock\n",
        );
        assert_eq!(config.logs_dir, Some(PathBuf::from("/srv/var/logs")));
        assert_eq!(config.jobs_dir, Some(PathBuf::from("/srv/../jobs")));
        assert_eq!(config.eggs_dir, PathBuf::from("/abs/eggs"));
        assert_eq!(config.dbs_dir, DbsDir::Dir(PathBuf::from("/srv/dbs")));
        assert_eq!(
            config.unix_socket_path,
            Some(PathBuf::from("/srv/run/scrapyd.sock"))
        );
        // `~` is not expanded (Scrapyd doesn't).
        assert_eq!(
            config_env("[scrapyd]\nlogs_dir = ~/logs\n", &[])
                .unwrap()
                .logs_dir,
            Some(PathBuf::from("/srv/~/logs"))
        );
        let config = config_env("[scrapyd]\nlogs_dir =\njobs_dir =\n", &[]).unwrap();
        assert_eq!(config.logs_dir, None);
        assert_eq!(config.jobs_dir, None);
    }

    #[test]
    fn dbs_dir_memory_and_empty_dirs() {
        assert_eq!(
            cfg("[scrapyd]\ndbs_dir = :memory:\n").dbs_dir,
            DbsDir::Memory
        );
        let err = error("[scrapyd]\ndbs_dir =\n");
        assert!(
            err.contains("[scrapyd] dbs_dir = \"\": expected a directory or :memory:"),
            "{err}"
        );
        let err = error("[scrapyd]\neggs_dir =\n");
        assert!(
            err.contains("[scrapyd] eggs_dir = \"\": expected a directory"),
            "{err}"
        );
    }

    #[test]
    fn items_dir_forms() {
        let items = |value: &str| cfg(&format!("[scrapyd]\nitems_dir = {value}\n")).items_dir;
        assert_eq!(items(""), ItemsDir::Disabled);
        assert_eq!(items("items"), ItemsDir::Local("/srv/items".into()));
        assert_eq!(items("/var/items"), ItemsDir::Local("/var/items".into()));
        assert_eq!(items("./a:b"), ItemsDir::Local("/srv/a:b".into()));
        assert_eq!(items("file:/x/items"), ItemsDir::Local("/x/items".into()));
        assert_eq!(items("file:///x/items"), ItemsDir::Local("/x/items".into()));
        assert_eq!(
            items("FILE://host/x/items"),
            ItemsDir::Local("/x/items".into())
        );
        assert_eq!(
            items("file:///x/items?a=1#frag"),
            ItemsDir::Local("/x/items".into())
        );
        assert_eq!(items("file:rel#f"), ItemsDir::Local("/srv/rel".into()));
        assert_eq!(
            items("s3://bucket/items"),
            ItemsDir::Url("s3://bucket/items".into())
        );
        assert_eq!(
            items("https://example.com/feed?x=1"),
            ItemsDir::Url("https://example.com/feed?x=1".into())
        );
        assert_eq!(items("gs:bucket"), ItemsDir::Url("gs:bucket".into()));
        let err = error("[scrapyd]\nitems_dir = file://host\n");
        assert!(err.contains("a file: URL needs a path"), "{err}");

        let config = cfg("[scrapyd]\nitems_dir = items\n");
        assert_eq!(config.items_local(), Some(Path::new("/srv/items")));
        let config = config_env("[scrapyd]\nitems_dir = s3://b/i\n", &[]).unwrap();
        assert_eq!(config.items_local(), None);
    }

    #[test]
    fn prefix_header_node_name_and_python() {
        let config = cfg(
            "[scrapyd]\nprefix_header = X-Script-Name\nnode_name = node-7\n\
             python = .venv/bin/python\n",
        );
        assert_eq!(config.prefix_header, "x-script-name");
        assert_eq!(config.node_name, "node-7");
        assert_eq!(config.python, "/srv/.venv/bin/python");
        assert_eq!(
            config_env("[scrapyd]\npython = /usr/bin/python3.12\n", &[])
                .unwrap()
                .python,
            "/usr/bin/python3.12"
        );
        assert_eq!(
            config_env("[scrapyd]\npython = pypy3\n", &[])
                .unwrap()
                .python,
            "pypy3"
        );
        let err = error("[scrapyd]\npython =\n");
        assert!(err.contains("expected a Python interpreter"), "{err}");
    }

    // --------------------------------------------------------------------------------------------
    // [services] and [settings]

    #[test]
    fn services_remove_alias_override_and_append() {
        let config = cfg(
            "[services]\ndaemonstatus.json =\nhello.json = scrapyd.webservice.ListProjects\n\
             Schedule.JSON = scrapyd.webservice.Status\ncancel.json = %(x)s\n\
             [DEFAULT]\nx = scrapyd.webservice.Cancel\nfrom_default = nonsense\n",
        );
        let names: Vec<&str> = config.services.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "schedule.json",
                "cancel.json",
                "status.json",
                "addversion.json",
                "listprojects.json",
                "listversions.json",
                "listspiders.json",
                "delproject.json",
                "delversion.json",
                "listjobs.json",
                "listnodes.json",
                "hello.json",
            ]
        );
        assert_eq!(config.services[0].1, Service::Status);
        // [DEFAULT] entries (`x`, `from_default`) serve interpolation but are not endpoints.
        assert_eq!(config.services[1].1, Service::Cancel);
        assert_eq!(config.services[11].1, Service::ListProjects);
        // A removed endpoint can be restored by a later file, in its original position.
        let mut ini = builtin_ini();
        ini.merge(parse("[services]\nstatus.json =\n"), None);
        ini.merge(
            parse("[services]\nstatus.json = scrapyd.webservice.Status\n"),
            None,
        );
        let services = build_services(&ini).unwrap();
        assert_eq!(services[2], ("status.json".into(), Service::Status));
    }

    #[test]
    fn services_errors() {
        let err = invalid(
            config_env("[services]\nfoo.json = myproject.webservice.Foo\n", &[]).unwrap_err(),
        );
        assert_eq!(err.section, "services");
        assert_eq!(err.option, "foo.json");
        assert!(err.problem.contains("cannot load Python classes"));
        assert!(err.problem.contains("or empty to remove the endpoint"));
        let err = error("[services]\na/b.json = scrapyd.webservice.Status\n");
        assert!(err.contains("cannot contain '/'"), "{err}");
        let err = error("[services]\nx.json = %(nope)s\n");
        assert!(err.contains("[services] x.json"), "{err}");
    }

    #[test]
    fn settings_in_file_order() {
        let config = cfg(
            "[DEFAULT]\npkg = mypkg\nignored = 1\n[settings]\nzeta = %(pkg)s.settings\n\
             Alpha = alpha.settings\n",
        );
        assert_eq!(
            config.settings,
            [
                ("zeta".to_owned(), "mypkg.settings".to_owned()),
                ("alpha".to_owned(), "alpha.settings".to_owned()),
            ]
        );
    }

    // --------------------------------------------------------------------------------------------
    // API keys

    #[test]
    fn api_keys_of_the_option_reach_every_project_and_the_section_scopes_them() {
        let config = cfg(
            "[scrapyd]\napi_keys = one, two\n[api_keys]\nMixedCase = books 7\n\
             reader = ro:books, ro:*\nboss = admin\n[DEFAULT]\nnot_a_key = x\n",
        );
        let keys: Vec<&str> = config.api_keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["one", "two", "MixedCase", "reader", "boss"]);
        let key = |name: &str| config.api_keys.iter().find(|k| k.key == name).unwrap();
        use ProjectRight::{Read, Write};
        assert_eq!(
            key("one").right(Some("any"), Some(1_000_000_000)),
            Some(Write)
        );
        assert_eq!(key("one").reaches_every_project(), Some(Write));
        assert!(key("one").lists("any", 1_000_000_000));
        let scoped = key("MixedCase");
        assert_eq!(
            scoped.right(Some("books"), Some(1_000_000_000)),
            Some(Write)
        );
        // `7` names the project with that id (a project called "7" has it).
        assert_eq!(scoped.right(None, Some(7)), Some(Write));
        assert_eq!(scoped.right(Some("7"), Some(7)), Some(Write));
        // A project named "1000000005" has an allocated id: grant 1000000005 is not it.
        let by_id = &cfg("[api_keys]\nk = 1000000005\n").api_keys[0];
        assert_eq!(by_id.right(Some("1000000005"), Some(1_000_000_001)), None);
        assert_eq!(by_id.right(Some("books"), Some(1_000_000_005)), Some(Write));
        assert_eq!(scoped.right(Some("news"), Some(8)), None);
        assert_eq!(scoped.reaches_every_project(), None);
        assert!(scoped.origin.contains("line 4"), "{}", scoped.origin);
        let reader = key("reader");
        assert_eq!(reader.right(Some("books"), Some(9)), Some(Read));
        assert_eq!(reader.right(Some("news"), Some(8)), Some(Read));
        assert_eq!(reader.reaches_every_project(), Some(Read));
        let boss = key("boss");
        assert!(boss.is_admin());
        assert_eq!(boss.right(Some("books"), Some(9)), Some(Write));
        assert!(!boss.lists("books", 9), "an admin belongs to no project");
        // A read-only `*` with one writable project depends on the project.
        let mixed = &cfg("[api_keys]\nk = ro:* books\n").api_keys[0];
        assert_eq!(mixed.reaches_every_project(), None);
        assert_eq!(mixed.right(Some("books"), None), Some(Write));
        assert_eq!(mixed.right(Some("news"), None), Some(Read));
    }

    #[test]
    fn the_documented_api_keys_example_means_what_it_says() {
        let doc = include_str!("../docs/configuration.md");
        let start = doc.find("```ini\n[api_keys]\n").unwrap() + "```ini\n".len();
        let block = &doc[start..start + doc[start..].find("```").unwrap()];
        let config = cfg(block);
        let key = |name: &str| config.api_keys.iter().find(|k| k.key == name).unwrap();
        use ProjectRight::{Read, Write};
        assert_eq!(config.api_keys.len(), 5);
        assert_eq!(
            key("0123abcd").right(Some("books"), Some(1_000_000_000)),
            Some(Write)
        );
        assert_eq!(key("0123abcd").right(Some("7"), Some(7)), Some(Write));
        assert_eq!(
            key("0123abcd").right(Some("news"), Some(1_000_000_001)),
            None
        );
        assert_eq!(
            key("4567cdef").right(Some("books"), Some(1_000_000_000)),
            Some(Read)
        );
        assert_eq!(
            key("4567cdef").right(Some("news"), Some(1_000_000_001)),
            Some(Write)
        );
        assert_eq!(key("89abef01").reaches_every_project(), Some(Read));
        assert_eq!(key("fedcba98").reaches_every_project(), Some(Write));
        assert!(key("deadbeef").is_admin());
    }

    #[test]
    fn api_key_errors_name_the_line_never_the_key() {
        for (text, problem) in [
            (
                "[api_keys]\nsecret123 =\n",
                "expected the projects this key may use",
            ),
            ("[api_keys]\nsecret123 = admin books\n", "stands alone"),
            ("[api_keys]\nsecret123 = ro:\n", "names no project"),
            ("[api_keys]\nteam:secret123 = *\n", "cannot contain"),
            ("[api_keys]\nteam=secret123 = *\n", "cannot contain"),
            ("[api_keys]\nsecret123 = ro:a:b\n", "cannot contain"),
            ("[api_keys]\nsecret123 = ../x\n", "a project name has"),
            ("[api_keys]\nsecret123 = a:b\n", "cannot contain"),
            (
                "[scrapyd]\napi_keys = secret123\n[api_keys]\nsecret123 = *\n",
                "given twice",
            ),
            (
                "[api_keys]\nsecret123 = books  # the books\n",
                "put comments on lines of their own",
            ),
        ] {
            let err = error(text);
            assert!(err.contains(problem), "{text}: {err}");
            assert!(
                err.contains("[api_keys] <key>") && err.contains("(line "),
                "{err}"
            );
            assert!(
                !err.contains("secret123"),
                "the key is in the message: {err}"
            );
        }
        // Neither are the keys of the `api_keys` option, a password, or a misspelt key option.
        for text in [
            "[scrapyd]\napi_keys = secret%123\n",
            "[scrapyd]\npassword = secret%123\n",
            "[scrapyd]\napi_key = secret123\n",
        ] {
            let err = error(text);
            assert!(err.contains("<hidden>") && !err.contains("secret"), "{err}");
        }
        assert!(
            !format!("{:?}", ApiKey::every_project("secret123")).contains("secret"),
            "Debug shows the key"
        );
        // A key alone on its line, in a syntax error.
        let err = error("[api_keys]\nsecret123\n");
        assert!(
            err.contains("not shown") && !err.contains("secret"),
            "{err}"
        );
        // Two keys differing only in case are one option name to configparser.
        let err = error("[api_keys]\nSecret123 = *\nsecret123 = *\n");
        assert!(
            err.contains("already appeared") && !err.contains("ecret123"),
            "{err}"
        );
    }

    // --------------------------------------------------------------------------------------------
    // Derived values

    #[test]
    fn capacity() {
        let mut config = Config::defaults(Path::new("/srv"));
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.capacity(), cpus * 4);
        config.max_proc_per_cpu = 1;
        assert_eq!(config.capacity(), cpus);
        config.max_proc_per_cpu = 0;
        assert_eq!(config.capacity(), 1);
        config.max_proc = 3;
        assert_eq!(config.capacity(), 3);
    }

    #[test]
    fn parse_number_helpers() {
        assert_eq!(parse_python_int(" 42 "), Some(42));
        assert_eq!(parse_python_int("-4_2"), Some(-42));
        assert_eq!(parse_python_int("+"), None);
        assert_eq!(parse_python_int("4 2"), None);
        assert_eq!(parse_python_float("1_000.5"), Some(1000.5));
        assert_eq!(parse_python_float("1_.5"), None);
        assert_eq!(parse_python_float(" 5. "), Some(5.0));
        assert_eq!(parse_python_bool("YES"), Some(true));
        assert_eq!(parse_python_bool(""), None);
        assert_eq!(url_scheme("c:/x"), Some(("c", "/x")));
        assert_eq!(url_scheme("1a:/x"), None);
        assert_eq!(url_scheme("/a:b"), None);
    }
}
