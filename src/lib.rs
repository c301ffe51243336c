//! scrapyd-rs: a Scrapyd-compatible daemon. Scrapy projects are uploaded as eggs
//! (`addversion.json`), crawls are scheduled (`schedule.json`) into per-project SQLite queues,
//! and a launcher starts them as `scrapy crawl` processes the moment a slot is free.
//!
//! Layout (see `docs/architecture.md`):
//! - [`config`]: `scrapyd.conf` files → [`config::Config`].
//! - [`api`]: the router, Scrapyd's webservices, parameters, envelope, auth.
//! - [`web`]: the HTML pages and the logs/items trees.
//! - [`eggs`]: the filesystem egg store and version order.
//! - [`storage`]: every database state behind typed methods (SQLite, or PostgreSQL for a
//!   cluster); [`listing`] is the cached jobs listing read from it.
//! - [`scheduler`]: the one path that makes jobs (`schedule.json`, the Scrapy Cloud API).
//! - [`launcher`]: the task that starts, signals and reaps crawls; [`runner`]: the embedded
//!   Python runner; [`node`]: this daemon as a node of a cluster (registration, heartbeat,
//!   dead nodes).
//! - [`cloud`]: the Scrapy Cloud API (`/api/`, `/storage/`) for `scrapinghub` and `shub`.
//! - [`error`], [`names`], [`pyjson`]: the API error type, name validation, Python-style JSON.

pub mod api;
pub mod cloud;
pub mod config;
pub mod eggs;
pub mod error;

pub mod launcher;
pub mod listing;
pub mod names;
pub mod node;
pub mod process;
pub mod pyjson;

pub mod runner;
pub mod scheduler;
pub mod storage;
pub mod web;

use config::Config;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// What request handlers share: cheap handles to the parts that own state.
#[derive(Clone)]
pub struct AppState {
    /// The configuration, read once at start-up.
    pub config: Arc<Config>,
    /// The storage layer (queues, jobs, the Scrapy Cloud registry and data).
    pub storage: storage::Storage,
    /// The egg store and known projects.
    pub eggs: Arc<eggs::EggStore>,
    /// The launcher task.
    pub launcher: launcher::LauncherHandle,
    /// The one path that makes jobs.
    pub scheduler: scheduler::Scheduler,
    /// The jobs listing, cached between store writes.
    pub listing: Arc<listing::Listing>,
    /// When this daemon started (µs since the epoch).
    pub started: i64,
}

/// A new job id like Scrapyd's (`uuid1().hex`: 32 lowercase hex digits, time-based).
pub fn new_job_id() -> String {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    let node = NODE.get_or_init(|| {
        let random = uuid::Uuid::new_v4();
        let mut node = [0u8; 6];
        node.copy_from_slice(&random.as_bytes()[..6]);
        node[0] |= 1; // multicast bit: marks a random node id, as RFC 4122 asks
        node
    });
    uuid::Uuid::now_v1(node).simple().to_string()
}

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Join(#[from] node::JoinError),
    #[error("{0}")]
    Io(String),
}

/// Serves the daemon on `listener` (and on `config.unix_socket_path` when set) until `shutdown`
/// completes; then stops accepting requests, stops the crawls and returns.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_on(config, Some(listener), shutdown).await
}

/// Like [`serve`], with the TCP listener optional (a daemon may serve only its unix socket).
pub async fn serve_on(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    let cwd =
        std::env::current_dir().map_err(|e| StartError::Io(format!("current directory: {e}")))?;
    let runner = runner::Runner::install(&config.python, &cwd)
        .map_err(|e| StartError::Io(format!("cannot write the runner: {e}")))?;
    let leave = config.leave_crawls_running;
    let result = serve_with_runner(config, listener, shutdown, runner.clone()).await;
    // Crawls left running may not even have opened the script yet: keep it for them.
    if !leave {
        runner.remove();
    }
    result
}

async fn serve_with_runner(
    config: Arc<Config>,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    runner: runner::Runner,
) -> Result<(), StartError> {
    let store = match &config.database_url {
        Some(url) => storage::Storage::connect(url.expose(), &config.node_name).await?,
        None => storage::Storage::open(config.dbs_dir.clone())?,
    };
    let eggs = eggs::EggStore::open(
        &config.eggs_dir,
        config.settings.clone(),
        runner.clone(),
        store.shared_eggs(),
    )
    .map_err(|e| StartError::Io(format!("eggs_dir {}: {e}", config.eggs_dir.display())))?;
    // On a cluster: the eggs other nodes uploaded, before anything reads eggs_dir.
    eggs.sync().await.map_err(|e| {
        StartError::Io(format!(
            "eggs_dir {}: {}",
            config.eggs_dir.display(),
            e.message
        ))
    })?;
    let eggs = Arc::new(eggs);
    if let Some(dir) = &config.logs_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::Io(format!("logs_dir {}: {e}", dir.display())))?;
    }
    let results = match &config.dbs_dir {
        config::DbsDir::Dir(dir) => dir.join("results"),
        config::DbsDir::Memory => runner.private_dir().join("results"),
    };
    std::fs::create_dir_all(&results)
        .map_err(|e| StartError::Io(format!("{}: {e}", results.display())))?;

    // Both listeners are bound before either serves (a client that got an answer on one can
    // connect to the other), and before the launcher starts: a daemon that cannot serve starts
    // no crawl.
    let unix_listener = match &config.unix_socket_path {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| StartError::Io(format!("unix_socket_path {}: {e}", path.display())))?;
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
            }
            Some(listener)
        }
        None => None,
    };
    if unix_listener.is_none() && listener.is_none() {
        return Err(StartError::Io(
            "nothing to serve: set bind_address and http_port, or unix_socket_path".into(),
        ));
    }
    let tcp_addr = match &listener {
        Some(l) => Some(l.local_addr().map_err(|e| StartError::Io(e.to_string()))?),
        None => None,
    };
    // Registered before it recovers: the crawls a previous process of this node left are
    // this node's again (unless another node declared them lost meanwhile).
    let node_info = node::info(&config, tcp_addr);
    node::join(&store, &config, &node_info).await?;
    let left_running = {
        let results = results.clone();
        store
            .recover(move |r| launcher::orphan_of(&results, r))
            .await?
    };

    let token = CancellationToken::new();
    // Watched from here on: a SIGTERM during the adoption below stops the daemon before the
    // launcher starts any crawl (its loop checks the token first).
    let mut shutdown = Box::pin(shutdown);
    let stopped = tokio::select! {
        biased;
        () = &mut shutdown => true,
        () = std::future::ready(()) => false,
    };
    if stopped {
        token.cancel();
    } else {
        let trigger = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
    }
    let jobdata = cloud::jobdata::JobDataLaunch {
        root: config.jobdata_dir.clone(),
    };
    let (mut launcher, handle) = launcher::Launcher::new(
        config.clone(),
        store.clone(),
        eggs.clone(),
        results,
        Arc::new(jobdata),
    );
    // With no crawl left running, no crawl can still import from a replaced extra egg.
    if left_running.is_empty() {
        eggs.remove_unused_extra_eggs();
    }
    // Before serving: a crawl that ended while the daemon was down is recorded before any
    // client can see it as running.
    launcher.adopt_left_running(left_running).await;
    let launcher_task = tokio::spawn(launcher.run(token.clone()));
    let node_task = tokio::spawn(node::run(
        store.clone(),
        config.clone(),
        node_info,
        handle.clone(),
        token.clone(),
    ));
    let state = AppState {
        config: config.clone(),
        scheduler: scheduler::Scheduler::new(eggs.clone(), store.clone(), handle.clone()),
        storage: store,
        eggs,
        launcher: handle,
        listing: Arc::default(),
        started: storage::model::now_micros(),
    };
    let listing = (
        state.listing.clone(),
        state.storage.clone(),
        state.eggs.projects(),
    );
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(api::site(state));

    if config.auth_enabled() {
        tracing::info!("Basic authentication enabled");
    } else {
        tracing::info!("Basic authentication disabled as either `username` or `password` is unset");
        if config
            .api_keys
            .iter()
            .any(|k| k.reaches_every_project() != Some(config::ProjectRight::Write))
        {
            tracing::warn!(
                "[api_keys] limits keys to projects, but without `username` and `password` the \
                 Scrapyd endpoints, /logs/ and /items/ of this port are open to anyone"
            );
        }
    }

    let mut servers = tokio::task::JoinSet::new();
    if let Some(listener) = unix_listener {
        if let Some(path) = &config.unix_socket_path {
            tracing::info!(
                "Scrapyd web console available at http+unix://{}",
                path.display()
            );
        }
        let token = token.clone();
        let app = app.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
    }
    if let (Some(listener), Some(addr)) = (listener, tcp_addr) {
        tracing::info!("Scrapyd web console available at http://{addr}/");
        let app = app.clone();
        let token = token.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
    }

    // The first listjobs.json need not read and render the whole history itself.
    let prepare = tokio::spawn({
        let (listing, store, projects) = listing;
        let config = config.clone();
        async move {
            match listing.prepare(&store, &config, projects).await {
                Ok(n) => tracing::info!("Jobs listing ready: {n} finished jobs"),
                Err(e) => tracing::warn!("cannot prepare the jobs listing: {e}"),
            }
        }
    });
    while let Some(result) = servers.join_next().await {
        if let Ok(Err(e)) = result {
            tracing::error!("server error: {e}");
        }
    }
    token.cancel();
    let _ = launcher_task.await;
    let _ = node_task.await;
    // Bounded by one read of the history.
    let _ = prepare.await;
    if let Some(path) = &config.unix_socket_path {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}
