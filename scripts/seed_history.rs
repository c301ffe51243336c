//! Seeds a fresh `dbs_dir` with finished jobs through the daemon's own storage layer (the same
//! calls the launcher makes: queue, start, finish), for `scripts/bench`'s long-history figures.
//!
//! ```sh
//! cargo run --release --example seed_history -- DBS_DIR COUNT PROJECT SPIDER
//! ```
//! Durability is relaxed for the seeding only (`synchronous = OFF`): the daemon is not running.

use scrapyd_rs::config::DbsDir;
use scrapyd_rs::jobs::{Ending, Outcome, now_micros};
use scrapyd_rs::queue::PendingJob;
use scrapyd_rs::store::{Store, StoreError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, count, project, spider] = args.as_slice() else {
        return Err("usage: seed_history DBS_DIR COUNT PROJECT SPIDER".into());
    };
    let count: usize = count.parse()?;
    let (dir, project, spider) = (dir.clone(), project.clone(), spider.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let store = Store::open(DbsDir::Dir(std::fs::canonicalize(&dir)?))?;
    let seeded = runtime.block_on(store.call(move |db| {
        for name in [scrapyd_rs::jobs::JOBS_DB, project.as_str()] {
            db.conn(name)?.pragma_update(None, "synchronous", "OFF")?;
        }
        // One job a second, ending in the past.
        let first = now_micros() - (count as i64 + 1) * 1_000_000;
        let projects = vec![project.clone()];
        for i in 0..count {
            let start = first + i as i64 * 1_000_000;
            db.enqueue(&PendingJob {
                project: project.clone(),
                spider: spider.clone(),
                job: format!("{:032x}", i),
                priority: 0.0,
                version: None,
                settings: vec![],
                args: vec![],
                created: start,
            })?;
            let record = db.start_next(&projects, start)?.ok_or(StoreError::Closed)?;
            let ending = Ending {
                end_time: start + 500_000,
                exit_code: Some(0),
                signal: None,
                outcome: Outcome::Finished,
                reason: None,
                finish_reason: Some("finished".into()),
                stats: None,
            };
            db.finish(record.id, &ending, count)?;
        }
        db.finished_count()
    }))?;
    println!("{seeded} finished jobs in {dir}");
    Ok(())
}
