-- A project's activity log and its settings object (Scrapy Cloud's `activity/<p>` and
-- `projects/<p>/settings`).
CREATE TABLE IF NOT EXISTS cloud_activity (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cloud_activity_by_project ON cloud_activity (project, id);
CREATE TABLE IF NOT EXISTS cloud_project_settings (
    project TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
