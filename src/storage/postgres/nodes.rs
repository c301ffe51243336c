//! The nodes of a cluster (`nodes`): registration, heartbeat (the database's clock), and the
//! sweep that records a dead node's running jobs `lost`. A node's registration number changes
//! each time its name is registered or declared dead, and the node's claims carry it, so a
//! node whose registration was taken over claims nothing more.

use super::Postgres;
use super::tx::{PgTx, Result};
use crate::storage::lifecycle::Lifecycle;
use crate::storage::model::{
    CancelRequest, Ending, JobNode, LostJob, NodeInfo, NodeStatus, Outcome, Registration,
    format_time, now_micros,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A database time as microseconds since the epoch.
fn micros(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000000)::bigint")
}

impl Postgres {
    /// Registers this node. A row of its name that beat within `timeout` is answered
    /// [`Registration::Alive`] (another process may hold the name) unless its last beat is
    /// `expected`: the caller saw that beat a heartbeat ago and it has not moved since, so its
    /// process is gone and this one takes the name over (re-adopting its crawls).
    pub async fn register_node(
        &self,
        info: NodeInfo,
        timeout: Duration,
        expected: Option<i64>,
    ) -> Result<Registration> {
        let answer = self
            .transact_pg(false, move |tx| {
                let timeout = timeout.as_secs_f64();
                let found = tx.opt(
                    &format!(
                        "SELECT registration, heartbeat > now() - make_interval(secs => $2),
                                {} FROM nodes WHERE name = $1 FOR UPDATE",
                        micros("heartbeat")
                    ),
                    &[&info.name, &timeout],
                )?;
                let max_proc = info.max_proc as i32;
                let registration = match found {
                    None => tx
                        .one(
                            "INSERT INTO nodes (name, url, max_proc) VALUES ($1, $2, $3)
                             RETURNING registration",
                            &[&info.name, &info.url, &max_proc],
                        )?
                        .get(0),
                    Some(row) => {
                        let (fresh, beat): (bool, i64) = (row.get(1), row.get(2));
                        if fresh && expected != Some(beat) {
                            return Ok(Registration::Alive(beat));
                        }
                        tx.one(
                            "UPDATE nodes SET url = $2, max_proc = $3, started = now(),
                                 heartbeat = now(), registration = registration + 1, alive = true
                             WHERE name = $1 RETURNING registration",
                            &[&info.name, &info.url, &max_proc],
                        )?
                        .get(0)
                    }
                };
                Ok(Registration::Registered(registration))
            })
            .await?;
        if let Registration::Registered(n) = answer {
            self.registration.store(n, Ordering::Release);
        }
        Ok(answer)
    }

    /// Beats this node's heartbeat; `false` when its registration was taken over (declared
    /// dead, or the name registered again): it must stop its crawls and register again.
    pub async fn heartbeat(&self) -> Result<bool> {
        let registration = self.registration.load(Ordering::Acquire);
        self.transact_pg(false, move |tx| {
            let n = tx.exec(
                "UPDATE nodes SET heartbeat = now()
                 WHERE name = $1 AND registration = $2 AND alive",
                &[&tx.node, &registration],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Declares dead the nodes whose heartbeat is older than `timeout` and records their
    /// running jobs finished, outcome `lost` (never run again: a crawl is not idempotent);
    /// returns those jobs. Nodes sweeping at once each take different dead nodes.
    pub async fn sweep_dead_nodes(&self, timeout: Duration, keep: usize) -> Result<Vec<LostJob>> {
        self.transact_pg(false, move |tx| {
            let timeout = timeout.as_secs_f64();
            let dead = tx.query(
                "UPDATE nodes SET alive = false, registration = registration + 1
                 WHERE name IN (SELECT name FROM nodes
                                WHERE alive AND heartbeat < now() - make_interval(secs => $1)
                                FOR UPDATE SKIP LOCKED)
                 RETURNING name",
                &[&timeout],
            )?;
            let mut lost = Vec::new();
            for row in dead {
                let node: String = row.get(0);
                tracing::warn!(node = %node, "node stopped beating: its running jobs are lost");
                lost.extend(record_lost(tx, &node, keep)?);
            }
            Ok(lost)
        })
        .await
    }

    /// Asks the nodes running `job` of `project` (other than this one) to signal it; returns
    /// how many crawls were asked. They hear it at once (`NOTIFY`), or at their next poll.
    pub async fn request_cancel(&self, project: &str, job: &str, signal: &str) -> Result<usize> {
        let (project, job, signal) = (project.to_owned(), job.to_owned(), signal.to_owned());
        self.transact_pg(false, move |tx| {
            let n = tx.exec(
                "UPDATE jobs SET cancels = cancels + 1, cancel_signal = $3
                 WHERE project = $1 AND job = $2 AND state = 'running' AND node <> $4",
                &[&project, &job, &signal, &tx.node],
            )?;
            if n > 0 {
                // The feed moves, so every node's launcher wakes and looks.
                tx.jobs_changed = true;
            }
            Ok(n as usize)
        })
        .await
    }

    /// The cancels asked for the crawls this node runs.
    pub async fn cancel_requests(&self) -> Result<Vec<CancelRequest>> {
        self.transact_pg(true, |tx| {
            Ok(tx
                .query(
                    "SELECT id, cancels, coalesce(cancel_signal, 'INT') FROM jobs
                     WHERE node = $1 AND state = 'running' AND cancels > 0",
                    &[&tx.node],
                )?
                .iter()
                .map(|r| CancelRequest {
                    id: r.get(0),
                    count: r.get::<_, i32>(1).max(0) as u32,
                    signal: r.get(2),
                })
                .collect())
        })
        .await
    }

    /// The node that ran the newest run of `job` of `project`, if any ran it.
    pub async fn job_node(
        &self,
        project: &str,
        job: &str,
        timeout: Duration,
    ) -> Result<Option<JobNode>> {
        let (project, job) = (project.to_owned(), job.to_owned());
        self.transact_pg(true, move |tx| {
            let timeout = timeout.as_secs_f64();
            Ok(tx
                .opt(
                    "SELECT n.name, n.url, n.alive AND n.heartbeat > now() - make_interval(secs => $3)
                     FROM jobs j JOIN nodes n ON n.name = j.node
                     WHERE j.project = $1 AND j.job = $2 ORDER BY j.id DESC LIMIT 1",
                    &[&project, &job, &timeout],
                )?
                .map(|r| JobNode {
                    name: r.get(0),
                    url: r.get(1),
                    alive: r.get(2),
                }))
        })
        .await
    }

    /// The nodes, by name.
    pub async fn nodes(&self, timeout: Duration) -> Result<Vec<NodeStatus>> {
        self.transact_pg(true, move |tx| {
            let timeout = timeout.as_secs_f64();
            let rows = tx.query(
                &format!(
                    "SELECT n.name, n.url, n.alive AND n.heartbeat > now() - make_interval(secs => $1),
                            (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.node = n.name),
                            n.max_proc, {}, {}
                     FROM nodes n ORDER BY n.name COLLATE \"C\"",
                    micros("n.started"),
                    micros("n.heartbeat")
                ),
                &[&timeout],
            )?;
            Ok(rows
                .iter()
                .map(|r| NodeStatus {
                    name: r.get(0),
                    url: r.get(1),
                    alive: r.get(2),
                    running: r.get::<_, i64>(3) as usize,
                    max_proc: r.get::<_, i32>(4) as usize,
                    started: format_time(r.get(5)),
                    heartbeat: format_time(r.get(6)),
                })
                .collect())
        })
        .await
    }
}

/// Records the running jobs of a dead `node` finished, outcome `lost`.
fn record_lost(tx: &mut PgTx<'_>, node: &str, keep: usize) -> Result<Vec<LostJob>> {
    let rows = tx.query(
        "SELECT id, project, job FROM jobs WHERE state = 'running' AND node = $1 ORDER BY id",
        &[&node],
    )?;
    let mut lost = Vec::new();
    for row in rows {
        let ending = Ending {
            end_time: now_micros(),
            exit_code: None,
            signal: None,
            outcome: Outcome::Lost,
            reason: Some(format!("node {node} stopped answering")),
            finish_reason: None,
            stats: None,
        };
        tx.finish(row.get(0), &ending, keep)?;
        lost.push(LostJob {
            node: node.to_owned(),
            project: row.get(1),
            job: row.get(2),
        });
    }
    Ok(lost)
}
