-- The Scrapy Cloud registry: project and spider ids, and a row per job (its key
-- `project/spider/n`, state and metadata object) whichever API scheduled it.
CREATE TABLE IF NOT EXISTS cloud_projects (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS cloud_spiders (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    id INTEGER NOT NULL,
    next_job INTEGER NOT NULL DEFAULT 1,
    tags TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (project, name),
    UNIQUE (project, id)
);
CREATE TABLE IF NOT EXISTS cloud_jobs (
    project TEXT NOT NULL,
    spider_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    spider TEXT NOT NULL,
    job TEXT NOT NULL,
    state TEXT NOT NULL,
    ts INTEGER NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (project, spider_id, n)
);
CREATE INDEX IF NOT EXISTS cloud_jobs_by_job ON cloud_jobs (project, job);
CREATE INDEX IF NOT EXISTS cloud_jobs_by_state ON cloud_jobs (project, state, ts);
