//! Seeds a fresh `dbs_dir` with finished jobs through the daemon's own storage layer (the same
//! calls the launcher makes: queue, claim, finish), for `scripts/bench`'s long-history figures.
//!
//! ```sh
//! cargo run --release --example seed_history -- DBS_DIR COUNT PROJECT SPIDER
//! ```
//! Durability is relaxed for the seeding only (`Storage::open_for_seeding`): the daemon is not
//! running.

use scrapyd_rs::config::DbsDir;
use scrapyd_rs::storage::model::{Ending, Outcome, PendingJob, Retention, now_micros};
use scrapyd_rs::storage::{Storage, StorageError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, count, project, spider] = args.as_slice() else {
        return Err("usage: seed_history DBS_DIR COUNT PROJECT SPIDER".into());
    };
    let count: usize = count.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let storage = Storage::open_for_seeding(DbsDir::Dir(std::fs::canonicalize(dir)?))?;
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
