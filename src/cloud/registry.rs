//! The Scrapy Cloud API's rules about the registry's job metadata: which keys only scrapyd-rs
//! writes, which an answer may show, and the states of the Scrapy Cloud job model. The
//! registry itself (ids, keys, job rows) is kept by [`crate::storage`].

use crate::storage::model::CloudJob;
use serde_json::{Map, Value};

/// Metadata keys that only scrapyd-rs writes: a job's token, its key, its state, whether an
/// external runner runs it, the Scrapyd job it is. Every call that takes metadata from a
/// client leaves them out (`jobs/<key>`, `jobq/<p>/push` and `update`, `run.json`'s `meta`).
pub const RESERVED_META: [&str; 6] = ["auth", "_key", "key", "state", "external", "scrapyd_job"];

/// Drops the [`RESERVED_META`] keys from metadata a client sent.
pub fn drop_reserved(meta: &mut Map<String, Value>) {
    for k in RESERVED_META {
        meta.remove(k);
    }
}

/// Whether an answer may show this metadata key (a job's token is only ever given to the
/// runner that takes the job).
pub fn shown_field(key: &str) -> bool {
    key != "auth"
}

/// Job states of the Scrapy Cloud model.
pub const STATES: [&str; 4] = ["pending", "running", "finished", "deleted"];

/// Whether a job is one that only the registry knows.
pub fn is_external(job: &CloudJob) -> bool {
    job.meta.get("external") == Some(&Value::Bool(true))
}
