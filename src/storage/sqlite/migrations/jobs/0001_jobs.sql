-- Scrapyd's side of `jobs.db`: a row per job from the moment it is taken off its queue
-- (`running`) to its end (`finished`, with its end time, exit status and outcome).
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    spider TEXT NOT NULL,
    job TEXT NOT NULL,
    version TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    args TEXT NOT NULL DEFAULT '{}',
    priority REAL NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    pid INTEGER,
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    exit_code INTEGER,
    signal INTEGER,
    outcome TEXT,
    reason TEXT,
    finish_reason TEXT,
    stats TEXT,
    proc_start TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, end_time);
CREATE INDEX IF NOT EXISTS jobs_by_job ON jobs (job);
