-- A project's activity log and its settings object (Scrapy Cloud's `activity/<p>` and
-- `projects/<p>/settings`).
CREATE TABLE cloud_activity (
    id bigserial PRIMARY KEY,
    project text NOT NULL,
    ts bigint NOT NULL,
    event json NOT NULL
);
CREATE INDEX cloud_activity_by_project ON cloud_activity (project, id);
CREATE TABLE cloud_project_settings (
    project text PRIMARY KEY,
    settings json NOT NULL
);
