-- The Scrapy Cloud registry: project and spider ids, and a row per job (its key
-- `project/spider/n`, state and metadata object) whichever API scheduled it. Objects are
-- `json`, not `jsonb`: their text is kept as written, keys in their order, as on SQLite.
CREATE TABLE cloud_projects (
    name text PRIMARY KEY,
    id bigint NOT NULL UNIQUE
);
CREATE TABLE cloud_spiders (
    project text NOT NULL,
    name text NOT NULL,
    id bigint NOT NULL,
    next_job bigint NOT NULL DEFAULT 1,
    tags json NOT NULL DEFAULT '[]',
    PRIMARY KEY (project, name),
    UNIQUE (project, id)
);
CREATE TABLE cloud_jobs (
    project text NOT NULL,
    spider_id bigint NOT NULL,
    n bigint NOT NULL,
    spider text NOT NULL,
    job text NOT NULL,
    state text NOT NULL,
    ts bigint NOT NULL,
    meta json NOT NULL,
    PRIMARY KEY (project, spider_id, n)
);
CREATE INDEX cloud_jobs_by_job ON cloud_jobs (project, job);
CREATE INDEX cloud_jobs_by_state ON cloud_jobs (project, state, ts);
