//! Seeds a fresh `dbs_dir` with finished jobs through the daemon's own storage layer (the same
//! calls the launcher makes: queue, claim, finish), for `scripts/bench`'s long-history figures.
//!
//! ```sh
//! cargo run --release --example seed_history -- DBS_DIR COUNT PROJECT SPIDER
//! cargo run --release --example seed_history -- postgresql://… COUNT PROJECT SPIDER
//! ```
//! On SQLite, durability is relaxed for the seeding only (`Storage::open_for_seeding`): the
//! daemon is not running. On PostgreSQL the jobs are run by a node named `seed`.

use scrapyd_rs::config::DbsDir;
use scrapyd_rs::storage::model::{Ending, NodeInfo, Outcome, PendingJob, Retention, now_micros};
use scrapyd_rs::storage::{Storage, StorageError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, count, project, spider] = args.as_slice() else {
        return Err("usage: seed_history DBS_DIR COUNT PROJECT SPIDER".into());
    };
    let count: usize = count.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let storage = if dir.starts_with("postgres") {
        runtime.block_on(async {
            // The seeding need not wait for each commit to reach the disk (the daemon is not
            // running); the server's default is kept for everyone else.
            let sep = if dir.contains('?') { '&' } else { '?' };
            let url = format!("{dir}{sep}options=-c%20synchronous_commit%3Doff");
            let storage = Storage::connect(&url, "seed").await?;
            let node = NodeInfo {
                name: "seed".into(),
                url: String::new(),
                max_proc: 1,
            };
            storage
                .register_node(node, std::time::Duration::from_secs(1), None)
                .await?;
            Ok::<_, StorageError>(storage)
        })?
    } else {
        Storage::open_for_seeding(DbsDir::Dir(std::fs::canonicalize(dir)?))?
    };
    let retention = Retention {
        finished_to_keep: count,
        jobdata_to_keep: 0,
    };
    let seeded = runtime.block_on(async {
        // One job a second, ending in the past.
        let first = now_micros() - (count as i64 + 1) * 1_000_000;
        for i in 0..count {
            let start = first + i as i64 * 1_000_000;
            let job = PendingJob {
                created: start,
                ..PendingJob::new(project, spider, &format!("{i:032x}"))
            };
            storage.enqueue(job.into()).await?;
            let claim = storage
                .claim_next(vec![project.clone()], start)
                .await?
                .ok_or_else(|| StorageError::Internal("the job just queued is gone".into()))?;
            let ending = Ending {
                end_time: start + 500_000,
                exit_code: Some(0),
                signal: None,
                outcome: Outcome::Finished,
                reason: None,
                finish_reason: Some("finished".into()),
                stats: None,
            };
            storage.finish(claim.record.id, ending, retention).await?;
        }
        Ok::<_, StorageError>(storage.counts(vec![project.clone()]).await?.1.finished)
    })?;
    println!("{seeded} finished jobs in {dir}");
    Ok(())
}
