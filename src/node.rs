//! This daemon as a node of a cluster sharing one PostgreSQL database: it registers under
//! `node_name` at start-up, beats its heartbeat (the database's clock) every quarter of
//! `node_timeout`, declares dead the nodes that stopped beating (their running jobs are
//! recorded `lost`, never run again), and wakes its launcher when another node queues a job.
//! On SQLite there is one node and all of this does nothing.
//!
//! A node declares others dead only once its own heartbeats have reached the database for a
//! whole `node_timeout`: after an outage of the database every heartbeat is old, and the live
//! nodes get the time to beat again before anyone is declared dead.
//!
//! Two processes may not hold one name: a registration that finds the name's heartbeat fresh
//! waits one heartbeat and looks again; a heartbeat that moved means another process holds
//! the name, and this one refuses to start. One that did not move was left by a process that
//! is gone (a restart after `kill -9`): this one takes the name over and re-adopts its crawls.

use crate::config::Config;
use crate::launcher::LauncherHandle;
use crate::storage::Storage;
use crate::storage::model::{NodeInfo, Registration};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The shortest time between two heartbeats.
const MIN_BEAT: Duration = Duration::from_millis(100);

/// Why this node cannot join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "another node named {0:?} is running on this database (its heartbeat moved while this one \
         waited): give each node its own node_name"
    )]
    NameTaken(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// How often a node beats.
pub fn heartbeat_interval(config: &Config) -> Duration {
    (config.node_timeout / 4).max(MIN_BEAT)
}

/// What this node registers: its name, `node_url` (or the address it serves on), `max_proc`.
pub fn info(config: &Config, addr: Option<std::net::SocketAddr>) -> NodeInfo {
    let url = config.node_url.clone().unwrap_or_else(|| match addr {
        Some(a) if a.ip().is_unspecified() => format!("http://{}:{}", config.node_name, a.port()),
        Some(a) => format!("http://{a}"),
        None => String::new(),
    });
    NodeInfo {
        name: config.node_name.clone(),
        url,
        max_proc: config.capacity(),
    }
}

/// Registers this node (see the module's documentation).
pub async fn join(storage: &Storage, config: &Config, info: &NodeInfo) -> Result<(), JoinError> {
    let timeout = config.node_timeout;
    let beat = match storage.register_node(info.clone(), timeout, None).await? {
        Registration::Registered(_) => return Ok(()),
        Registration::Alive(beat) => beat,
    };
    tracing::info!(
        node = %info.name,
        "a node of this name beat recently: waiting one heartbeat to tell a restart from a twin"
    );
    // One and a half heartbeats: a live twin beats at least once meanwhile.
    tokio::time::sleep(heartbeat_interval(config) * 3 / 2).await;
    match storage
        .register_node(info.clone(), timeout, Some(beat))
        .await?
    {
        Registration::Registered(_) => Ok(()),
        Registration::Alive(_) => Err(JoinError::NameTaken(info.name.clone())),
    }
}

/// Beats, sweeps and listens until `stop` (a task of its own).
pub async fn run(
    storage: Storage,
    config: std::sync::Arc<Config>,
    info: NodeInfo,
    launcher: LauncherHandle,
    stop: CancellationToken,
) {
    if !storage.is_shared() {
        return;
    }
    {
        let launcher = launcher.clone();
        storage.listen(move || launcher.wake(), stop.clone());
    }
    let mut tick = tokio::time::interval(heartbeat_interval(&config));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when this node's heartbeats have all reached the database. It declares others
    // dead only after a whole `node_timeout` of them: after an outage of the database every
    // heartbeat is old, and the live nodes must get the time to beat again first.
    let mut beating_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let beat = storage.heartbeat().await;
        if beat.is_err() {
            beating_since = None;
        } else if beating_since.is_none() {
            beating_since = Some(tokio::time::Instant::now());
        }
        match beat {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    node = %info.name,
                    "this node was declared dead (or its name taken over): stopping its crawls \
                     (their jobs are recorded lost) and registering again"
                );
                launcher.abandon_all();
                if let Err(e) = join(&storage, &config, &info).await {
                    tracing::error!("cannot register again: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot beat the heartbeat: {e}"),
        }
        if beating_since.is_none_or(|t| t.elapsed() < config.node_timeout) {
            continue;
        }
        match storage
            .sweep_dead_nodes(config.node_timeout, config.finished_to_keep)
            .await
        {
            Ok(lost) => {
                for j in lost {
                    tracing::warn!(node = %j.node, project = %j.project, job = %j.job, "job lost with its node");
                }
            }
            Err(e) => tracing::warn!("cannot look for dead nodes: {e}"),
        }
    }
}
