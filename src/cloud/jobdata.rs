//! Each job's data streams — items, logs, requests and stats samples — as append-only files in
//! the job's folder `{jobdata_dir}/{project id}/{spider id}/{n}/`:
//! - `{stream}.jl`: one entry per line, `@{ms} {compact JSON}` (the time it was written, then
//!   the value; a line without the `@` prefix is a bare value), appended by the crawl's runner
//!   (a Scrapy extension) and by storage API writes, each line with one `write()` on an
//!   `O_APPEND` file;
//! - `{stream}.idx`: the byte offset of every line (8 bytes each, little-endian), so entry `n`
//!   is one seek away and a count is a file size;
//! - `{stream}.stats.json`: how far the index reaches, and the stream's stats (field counts,
//!   values, bytes), updated with the index.
//!
//! The daemon extends the index and stats lazily — when the stream is read, counted or written
//! through the API — over the lines added since (complete lines only: a line being written is
//! left for next time). Reads stream from the file; nothing holds a whole stream in memory.
//! Why files and not SQLite: a crawl writes its data from its own process, and must keep
//! writing while the daemon restarts (re-adoption); plain appends need no shared database
//! handle, and reading a million entries is a sequential file read.

use crate::launcher::LaunchExtension;
use crate::storage::model::{JobKey, RegistryLaunch};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The four streams of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Items,
    Logs,
    Requests,
    Samples,
}

impl StreamKind {
    pub fn parse(name: &str) -> Option<StreamKind> {
        Some(match name {
            "items" => StreamKind::Items,
            "logs" => StreamKind::Logs,
            "requests" => StreamKind::Requests,
            "samples" => StreamKind::Samples,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Items => "items",
            StreamKind::Logs => "logs",
            StreamKind::Requests => "requests",
            StreamKind::Samples => "samples",
        }
    }

    /// Whether the client may ask for msgpack (never for requests).
    pub fn allows_msgpack(self) -> bool {
        self != StreamKind::Requests
    }
}

/// Splits a stored line into its write time (ms) and its JSON.
pub fn split_ts(line: &[u8]) -> (Option<i64>, &[u8]) {
    if let Some(rest) = line.strip_prefix(b"@")
        && let Some(space) = rest.iter().position(|b| *b == b' ')
        && let Ok(text) = std::str::from_utf8(&rest[..space])
        && let Ok(ts) = text.parse::<i64>()
    {
        return (Some(ts), &rest[space + 1..]);
    }
    (None, line)
}

/// The jobs with data under `root` for project `project` (and one spider), in key order.
pub fn jobs_with_data(
    root: &Path,
    project: i64,
    spider: Option<i64>,
) -> Vec<crate::storage::model::JobKey> {
    let numbers = |dir: &Path| -> Vec<i64> {
        let mut n: Vec<i64> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        crate::storage::model::parse_id(&e.file_name().to_string_lossy())
                    })
                    .collect()
            })
            .unwrap_or_default();
        n.sort_unstable();
        n
    };
    let project_dir = root.join(project.to_string());
    let spiders = match spider {
        Some(s) => vec![s],
        None => numbers(&project_dir),
    };
    let mut keys = Vec::new();
    for s in spiders {
        for n in numbers(&project_dir.join(s.to_string())) {
            keys.push(crate::storage::model::JobKey {
                project,
                spider: s,
                n,
            });
        }
    }
    keys
}

/// The folder of a job's data.
pub fn job_dir(root: &Path, project: i64, spider: i64, n: i64) -> PathBuf {
    root.join(project.to_string())
        .join(spider.to_string())
        .join(n.to_string())
}

/// Removes the data folders of jobs the retention dropped (in the background).
pub fn remove_job_data(root: &Path, keys: Vec<JobKey>) {
    if keys.is_empty() {
        return;
    }
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        for k in keys {
            let _ = std::fs::remove_dir_all(job_dir(&root, k.project, k.spider, k.n));
        }
    });
}

/// The Scrapy Cloud side of a crawl's launch: a job with a registry entry gets its data folder
/// (`SCRAPYD_RS_JOBDATA`, where the runner writes its streams), its key (`SHUB_JOBKEY`, as on
/// Scrapy Cloud) and the environment `run.json` asked for; the data of pruned jobs is removed.
pub struct JobDataLaunch {
    pub root: PathBuf,
}

impl LaunchExtension for JobDataLaunch {
    fn environment(&self, entry: &RegistryLaunch) -> Result<Vec<(String, String)>, String> {
        // A name or value the process environment cannot carry is left out.
        let mut env: Vec<(String, String)> = entry
            .environment
            .iter()
            .filter(|(k, v)| !k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'))
            .cloned()
            .collect();
        let key = entry.key;
        let dir = job_dir(&self.root, key.project, key.spider, key.n);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
        env.push(("SCRAPYD_RS_JOBDATA".into(), dir.display().to_string()));
        env.push(("SHUB_JOBKEY".into(), key.to_string()));
        Ok(env)
    }

    fn pruned(&self, keys: Vec<JobKey>) {
        remove_job_data(&self.root, keys);
    }
}

/// What the index covers, and the stats of those entries.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Indexed {
    /// Bytes of the `.jl` file covered by the index.
    pub bytes: u64,
    /// Entries covered.
    pub values: u64,
    /// Sum of the entries' msgpack sizes (Scrapy Cloud's `input_bytes`).
    pub input_bytes: u64,
    /// Per-field (items, requests) or per-level (logs) counts.
    pub counts: Map<String, Value>,
}

impl Indexed {
    /// Scrapy Cloud's stats object.
    pub fn stats(&self) -> Value {
        serde_json::json!({
            "counts": self.counts,
            "totals": {"input_values": self.values, "input_bytes": self.input_bytes},
        })
    }

    fn count(&mut self, key: String) {
        let n = self.counts.get(&key).and_then(Value::as_u64).unwrap_or(0);
        self.counts.insert(key, (n + 1).into());
    }

    fn add(&mut self, kind: StreamKind, value: &Value) {
        self.values += 1;
        match (kind, value) {
            (StreamKind::Logs, Value::Object(m)) => {
                if let Some(level) = m.get("level") {
                    self.count(match level {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                }
                let message = m.get("message").cloned().unwrap_or(Value::Null);
                self.input_bytes += super::wire::msgpack(&message).len() as u64;
            }
            (StreamKind::Items | StreamKind::Requests, Value::Object(m)) => {
                for (k, v) in m {
                    let skipped = v.is_null() || (kind == StreamKind::Requests && k == "time");
                    if !skipped {
                        self.count(k.clone());
                    }
                }
                self.input_bytes += super::wire::msgpack(value).len() as u64;
            }
            _ => self.input_bytes += super::wire::msgpack(value).len() as u64,
        }
    }
}

/// What a job's streams hold (the old dash API's job lines show it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataCounts {
    pub items: u64,
    pub logs: u64,
    /// Log entries at ERROR (40) or above.
    pub errors: u64,
    pub requests: u64,
    /// How many items have each field.
    pub fields: Map<String, Value>,
}

/// Counts the streams of the job whose data folder is `dir` (their indexes are brought up to
/// date first; a stream that cannot be read counts nothing).
pub fn data_counts(dir: &Path) -> DataCounts {
    let indexed = |kind| {
        Stream::new(dir.to_path_buf(), kind)
            .catch_up()
            .unwrap_or_default()
    };
    let items = indexed(StreamKind::Items);
    let logs = indexed(StreamKind::Logs);
    let errors = logs
        .counts
        .iter()
        .filter(|(level, _)| level.parse::<i64>().is_ok_and(|l| l >= 40))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    DataCounts {
        items: items.values,
        logs: logs.values,
        errors,
        requests: indexed(StreamKind::Requests).values,
        fields: items.counts,
    }
}

/// One stream of one job.
#[derive(Debug, Clone)]
pub struct Stream {
    dir: PathBuf,
    kind: StreamKind,
}

/// One lock per stream file (index updates and API appends), for the daemon's lifetime.
fn lock_of(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if locks.len() > 10_000 {
        locks.retain(|_, l| Arc::strong_count(l) > 1);
    }
    locks.entry(path.to_path_buf()).or_default().clone()
}

impl Stream {
    pub fn new(dir: PathBuf, kind: StreamKind) -> Stream {
        Stream { dir, kind }
    }

    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.kind.name()))
    }

    fn read_indexed(&self) -> Indexed {
        std::fs::read(self.path("stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Extends the index over the complete lines added since; returns what it covers.
    pub fn catch_up(&self) -> std::io::Result<Indexed> {
        let lock = lock_of(&self.path("jl"));
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.catch_up_locked()
    }

    fn catch_up_locked(&self) -> std::io::Result<Indexed> {
        let mut indexed = self.read_indexed();
        let data = match File::open(self.path("jl")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(indexed),
            Err(e) => return Err(e),
        };
        let len = data.metadata()?.len();
        // An index that does not match its data (a stream rewritten by hand) is rebuilt.
        let idx_len = std::fs::metadata(self.path("idx")).map_or(0, |m| m.len());
        if indexed.bytes > len || idx_len != indexed.values * 8 {
            indexed = Indexed::default();
            let _ = std::fs::remove_file(self.path("idx"));
        }
        if indexed.bytes == len {
            return Ok(indexed);
        }
        let mut reader = BufReader::with_capacity(1 << 16, data);
        reader.seek(SeekFrom::Start(indexed.bytes))?;
        let mut offsets = Vec::new();
        let mut line = Vec::new();
        let mut pos = indexed.bytes;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let value: Value = serde_json::from_slice(split_ts(&line).1).unwrap_or(Value::Null);
            offsets.extend_from_slice(&pos.to_le_bytes());
            indexed.add(self.kind, &value);
            pos += n as u64;
        }
        if offsets.is_empty() {
            return Ok(indexed);
        }
        let mut idx = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("idx"))?;
        idx.write_all(&offsets)?;
        indexed.bytes = pos;
        let tmp = self.path("stats.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&indexed)?)?;
        std::fs::rename(&tmp, self.path("stats.json"))?;
        Ok(indexed)
    }

    /// Appends values through the API. `start` is the offset of the first one: values the
    /// stream already holds (a batch sent again) are skipped, so a retried write is harmless.
    pub fn append(&self, start: Option<u64>, values: &[Value]) -> std::io::Result<u64> {
        let lock = lock_of(&self.path("jl"));
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let indexed = self.catch_up_locked()?;
        let skip = match start {
            Some(s) if s < indexed.values => (indexed.values - s) as usize,
            _ => 0,
        };
        let mut buf = Vec::new();
        let prefix = format!("@{} ", crate::storage::model::now_ms());
        for v in values.iter().skip(skip) {
            buf.extend_from_slice(prefix.as_bytes());
            // Scrapy Cloud drops a request's null `parent` and `fp`.
            if self.kind == StreamKind::Requests
                && let Value::Object(m) = v
            {
                let mut m = m.clone();
                m.retain(|k, v| !(v.is_null() && (k == "parent" || k == "fp")));
                serde_json::to_writer(&mut buf, &Value::Object(m))?;
                buf.push(b'\n');
                continue;
            }
            serde_json::to_writer(&mut buf, v)?;
            buf.push(b'\n');
        }
        if !buf.is_empty() {
            std::fs::create_dir_all(&self.dir)?;
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path("jl"))?;
            f.write_all(&buf)?;
        }
        Ok(self.catch_up_locked()?.values)
    }

    /// Reads entries `from..` (at most up to `until`, the count when the read began) in order.
    pub fn reader(&self, from: u64, until: u64) -> std::io::Result<EntryReader> {
        let data = File::open(self.path("jl"))?;
        let mut reader = BufReader::with_capacity(1 << 16, data);
        if from < until {
            let idx = File::open(self.path("idx"))?;
            let mut offset = [0u8; 8];
            idx.read_exact_at(&mut offset, from * 8)?;
            reader.seek(SeekFrom::Start(u64::from_le_bytes(offset)))?;
        }
        Ok(EntryReader {
            reader,
            next: from,
            until,
            line: Vec::new(),
        })
    }

    /// Entry `n` (its time and JSON), if the stream has it.
    pub fn get(&self, n: u64) -> std::io::Result<Option<(Option<i64>, Vec<u8>)>> {
        let indexed = self.catch_up()?;
        if n >= indexed.values {
            return Ok(None);
        }
        let mut r = self.reader(n, n + 1)?;
        Ok(r.next_entry()?.map(|e| (e.ts, e.json.to_vec())))
    }

    /// Removes the stream's files.
    pub fn remove(&self) {
        for ext in ["jl", "idx", "stats.json"] {
            let _ = std::fs::remove_file(self.path(ext));
        }
    }
}

/// One entry of a stream.
pub struct Entry<'a> {
    pub n: u64,
    /// When it was written (ms), if recorded.
    pub ts: Option<i64>,
    pub json: &'a [u8],
}

/// Entries of a stream, in order.
pub struct EntryReader {
    reader: BufReader<File>,
    next: u64,
    until: u64,
    line: Vec<u8>,
}

impl EntryReader {
    /// The next entry.
    pub fn next_entry(&mut self) -> std::io::Result<Option<Entry<'_>>> {
        if self.next >= self.until {
            return Ok(None);
        }
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            return Ok(None);
        }
        self.line.pop();
        let number = self.next;
        self.next += 1;
        let (ts, json) = split_ts(&self.line);
        Ok(Some(Entry {
            n: number,
            ts,
            json,
        }))
    }
}

/// A `[field, op, values]` filter of a storage read.
#[derive(Debug, Clone)]
pub struct Filter {
    field: String,
    op: String,
    values: Vec<Value>,
}

impl Filter {
    /// Parses one `filter` parameter.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("invalid filter {text}: {e}"))?;
        let Value::Array(parts) = v else {
            return Err(format!(
                "invalid filter {text}: expected [field, op, values]"
            ));
        };
        let field = parts
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| format!("invalid filter {text}: no field"))?
            .to_owned();
        let op = parts
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("invalid filter {text}: no operator"))?
            .to_owned();
        const OPS: [&str; 14] = [
            "=",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "contains",
            "icontains",
            "haselement",
            "hasnotelement",
            "exists",
            "notexists",
            "isempty",
            "isnotempty",
        ];
        if !OPS.contains(&op.as_str()) {
            return Err(format!("unknown filter operator {op}"));
        }
        let values = match parts.get(2) {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        Ok(Filter { field, op, values })
    }

    /// Whether an entry passes.
    pub fn matches(&self, entry: &Value) -> bool {
        let field = entry.get(&self.field);
        let cmp = |f: &Value, v: &Value| -> Option<std::cmp::Ordering> {
            match (f, v) {
                (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            }
        };
        let any = |pred: &dyn Fn(&Value, &Value) -> bool| match field {
            Some(f) => self.values.iter().any(|v| pred(f, v)),
            None => false,
        };
        use std::cmp::Ordering::*;
        match self.op.as_str() {
            "=" => any(&|f, v| f == v || cmp(f, v) == Some(Equal)),
            "!=" => field.is_some_and(|f| self.values.iter().all(|v| f != v)),
            ">" => any(&|f, v| cmp(f, v) == Some(Greater)),
            ">=" => any(&|f, v| matches!(cmp(f, v), Some(Greater | Equal))),
            "<" => any(&|f, v| cmp(f, v) == Some(Less)),
            "<=" => any(&|f, v| matches!(cmp(f, v), Some(Less | Equal))),
            "contains" => any(&|f, v| contains(f, v, false)),
            "icontains" => any(&|f, v| contains(f, v, true)),
            "haselement" => any(&|f, v| f.as_array().is_some_and(|a| a.contains(v))),
            "hasnotelement" => match field {
                Some(Value::Array(a)) => self.values.iter().all(|v| !a.contains(v)),
                _ => true,
            },
            "exists" => field.is_some(),
            "notexists" => field.is_none(),
            "isempty" => field.is_none_or(is_empty),
            "isnotempty" => field.is_some_and(|f| !is_empty(f)),
            _ => false,
        }
    }
}

fn contains(field: &Value, value: &Value, ignore_case: bool) -> bool {
    match (field, value) {
        (Value::String(f), Value::String(v)) if ignore_case => {
            f.to_lowercase().contains(&v.to_lowercase())
        }
        (Value::String(f), Value::String(v)) => f.contains(v.as_str()),
        (Value::Array(a), v) => a.contains(v),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Writes an entry's JSON with the meta fields asked for (`_key`, `_ts`) first, and nothing
/// else with `nodata`.
pub fn with_meta(out: &mut Vec<u8>, json: &[u8], key: Option<&str>, ts: Option<i64>, nodata: bool) {
    let mut meta = Vec::new();
    if let Some(k) = key {
        meta.extend_from_slice(b"\"_key\":");
        meta.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
    }
    if let Some(t) = ts {
        if !meta.is_empty() {
            meta.push(b',');
        }
        meta.extend_from_slice(format!("\"_ts\":{t}").as_bytes());
    }
    if nodata {
        out.push(b'{');
        out.extend_from_slice(&meta);
        out.push(b'}');
        return;
    }
    let trimmed = json.trim_ascii();
    match trimmed.strip_prefix(b"{") {
        Some(inner) if !meta.is_empty() => {
            out.push(b'{');
            out.extend_from_slice(&meta);
            if !inner.trim_ascii_start().starts_with(b"}") {
                out.push(b',');
            }
            out.extend_from_slice(inner);
        }
        _ => out.extend_from_slice(json),
    }
}

/// How to read entries (the storage API's read parameters).
#[derive(Debug, Default)]
pub struct ReadOptions {
    pub count: Option<u64>,
    /// Start at this entry (`start`), or after it (`startafter`): a job and an entry number.
    pub start: Option<(crate::storage::model::JobKey, u64)>,
    /// Only these entry numbers (`index`), of a single job.
    pub index: Vec<u64>,
    pub with_keys: bool,
    pub with_ts: bool,
    pub nodata: bool,
    pub filters: Vec<Filter>,
    /// Only entries written from this time on (ms, included)…
    pub startts: Option<i64>,
    /// …and before this one (ms, excluded). An entry without a recorded time is left out of
    /// a read with either.
    pub endts: Option<i64>,
    pub msgpack: bool,
}

impl ReadOptions {
    /// Whether an entry written at `ts` is in the time range asked for.
    fn in_time_range(&self, ts: Option<i64>) -> bool {
        match (self.startts, self.endts) {
            (None, None) => true,
            (start, end) => {
                ts.is_some_and(|t| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t < e))
            }
        }
    }
}

/// Reads the entries of `sources` (streams of jobs, in order) and hands the rendered answer
/// to `sink` in chunks of about 64 KiB; stops early when `sink` returns `false` (the client
/// went away).
pub fn read_entries(
    sources: &[(Stream, crate::storage::model::JobKey)],
    opts: &ReadOptions,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(1 << 16);
    let mut sent = 0u64;
    if opts.count == Some(0) {
        return Ok(());
    }
    // Renders one entry; false once the read is over.
    let mut emit =
        |key: &crate::storage::model::JobKey, e: &Entry<'_>, out: &mut Vec<u8>| -> bool {
            if !opts.in_time_range(e.ts) {
                return true;
            }
            if !opts.filters.is_empty() {
                let v: Value = serde_json::from_slice(e.json).unwrap_or(Value::Null);
                if !opts.filters.iter().all(|f| f.matches(&v)) {
                    return true;
                }
            }
            let entry_key = opts.with_keys.then(|| format!("{key}/{}", e.n));
            let ts = if opts.with_ts { e.ts } else { None };
            if opts.msgpack {
                let mut v: Value = serde_json::from_slice(e.json).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    if opts.nodata {
                        m.clear();
                    }
                    if let Some(k) = &entry_key {
                        m.insert("_key".into(), k.clone().into());
                    }
                    if let Some(t) = ts {
                        m.insert("_ts".into(), t.into());
                    }
                }
                out.extend(super::wire::msgpack(&v));
            } else {
                with_meta(out, e.json, entry_key.as_deref(), ts, opts.nodata);
                out.push(b'\n');
            }
            sent += 1;
            if out.len() >= 1 << 16 && !sink(std::mem::take(out)) {
                return false;
            }
            opts.count.is_none_or(|c| sent < c)
        };
    let mut started = opts.start.is_none();
    'sources: for (stream, key) in sources {
        let mut from = 0;
        if !started {
            match opts.start {
                Some((k, n)) if k == *key => {
                    from = n;
                    started = true;
                }
                _ => continue,
            }
        }
        let indexed = stream.catch_up()?;
        if !opts.index.is_empty() {
            for &n in &opts.index {
                if let Some((ts, json)) = stream.get(n)?
                    && !emit(key, &Entry { n, ts, json: &json }, &mut out)
                {
                    break 'sources;
                }
            }
            continue;
        }
        if from >= indexed.values {
            continue;
        }
        let mut reader = stream.reader(from, indexed.values)?;
        while let Some(e) = reader.next_entry()? {
            if !emit(key, &e, &mut out) {
                break 'sources;
            }
        }
    }
    if !out.is_empty() {
        sink(out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_registered_job_gets_its_folder_key_and_the_environment_a_process_can_carry() {
        let dir = tempfile::tempdir().unwrap();
        let launch = JobDataLaunch {
            root: dir.path().to_path_buf(),
        };
        let entry = RegistryLaunch {
            key: JobKey {
                project: 3,
                spider: 2,
                n: 7,
            },
            environment: vec![
                ("GOOD".into(), "1".into()),
                ("".into(), "x".into()),
                ("A=B".into(), "x".into()),
                ("NUL".into(), "a\0b".into()),
            ],
        };
        let env = launch.environment(&entry).unwrap();
        let folder = dir.path().join("3/2/7");
        assert_eq!(
            env,
            vec![
                ("GOOD".to_owned(), "1".to_owned()),
                (
                    "SCRAPYD_RS_JOBDATA".to_owned(),
                    folder.display().to_string()
                ),
                ("SHUB_JOBKEY".to_owned(), "3/2/7".to_owned()),
            ]
        );
        assert!(folder.is_dir());
    }

    #[test]
    fn appends_index_and_reads_back_from_any_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = Stream::new(dir.path().join("1/2/3"), StreamKind::Items);
        let values: Vec<Value> = (0..1000).map(|i| json!({"n": i, "x": null})).collect();
        assert_eq!(s.append(Some(0), &values[..600]).unwrap(), 600);
        // A retried batch is not stored twice.
        assert_eq!(s.append(Some(500), &values[500..]).unwrap(), 1000);
        let indexed = s.catch_up().unwrap();
        assert_eq!(indexed.values, 1000);
        assert_eq!(indexed.counts["n"], 1000);
        assert!(indexed.counts.get("x").is_none());
        let mut r = s.reader(998, indexed.values).unwrap();
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.n, e.json), (998, &br#"{"n":998,"x":null}"#[..]));
        assert!(e.ts.is_some());
        assert_eq!(s.get(5).unwrap().unwrap().1, br#"{"n":5,"x":null}"#);
        assert!(s.get(1000).unwrap().is_none());
    }

    #[test]
    fn a_line_being_written_waits_and_lines_from_the_runner_are_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Stream::new(dir.path().to_path_buf(), StreamKind::Logs);
        std::fs::write(
            dir.path().join("logs.jl"),
            b"{\"level\":20,\"message\":\"a\"}\n{\"level\":40,\"mess",
        )
        .unwrap();
        let i = s.catch_up().unwrap();
        assert_eq!(i.values, 1);
        assert_eq!(i.counts["20"], 1);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("logs.jl"))
            .unwrap();
        f.write_all(b"age\":\"b\"}\n").unwrap();
        let i = s.catch_up().unwrap();
        assert_eq!(i.values, 2);
        assert_eq!(i.counts["40"], 1);
        // msgpack sizes of the messages: "a" and "b", 2 bytes each.
        assert_eq!(i.input_bytes, 4);
    }

    #[test]
    fn reads_keep_the_entries_written_in_the_time_range() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("items.jl"),
            "@100 {\"n\":0}\n@200 {\"n\":1}\n{\"n\":2}\n@300 {\"n\":3}\n",
        )
        .unwrap();
        let key = crate::storage::model::JobKey {
            project: 1,
            spider: 2,
            n: 3,
        };
        let sources = vec![(
            Stream::new(dir.path().to_path_buf(), StreamKind::Items),
            key,
        )];
        let read = |startts, endts| {
            let opts = ReadOptions {
                startts,
                endts,
                ..ReadOptions::default()
            };
            let mut out = Vec::new();
            read_entries(&sources, &opts, &mut |c| {
                out.extend(c);
                true
            })
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            read(None, None),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
        );
        // From `startts` included to `endts` excluded; an entry without a time is left out.
        assert_eq!(read(Some(200), None), "{\"n\":1}\n{\"n\":3}\n");
        assert_eq!(read(None, Some(200)), "{\"n\":0}\n");
        assert_eq!(read(Some(150), Some(300)), "{\"n\":1}\n");
    }

    #[test]
    fn filters_and_keys() {
        let f = Filter::parse(r#"["level", ">=", [30]]"#).unwrap();
        assert!(f.matches(&json!({"level": 40})));
        assert!(!f.matches(&json!({"level": 20})));
        let f = Filter::parse(r#"["name", "contains", ["ab"]]"#).unwrap();
        assert!(f.matches(&json!({"name": "xaby"})));
        assert!(Filter::parse(r#"["a", "~", []]"#).is_err());
        let mut out = Vec::new();
        with_meta(&mut out, br#"{"a":1}"#, Some("1/2/3/4"), Some(7), false);
        assert_eq!(out, br#"{"_key":"1/2/3/4","_ts":7,"a":1}"#);
        out.clear();
        with_meta(&mut out, b"{}", Some("k"), None, false);
        assert_eq!(out, br#"{"_key":"k"}"#);
        out.clear();
        with_meta(&mut out, b"[1,2]", Some("k"), None, false);
        assert_eq!(out, b"[1,2]");
        assert_eq!(split_ts(b"@12 {\"a\":1}"), (Some(12), &b"{\"a\":1}"[..]));
        assert_eq!(split_ts(b"{}"), (None, &b"{}"[..]));
    }
}
