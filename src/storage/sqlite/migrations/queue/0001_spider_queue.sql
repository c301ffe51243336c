-- A project's spider queue, `{dbs_dir}/{project}.db`: Scrapyd's own table (`id`, `priority`,
-- `message` being Scrapyd's JSON message), so a Scrapyd folder's pending jobs carry over, plus
-- `created` (µs since the epoch; 0 for rows Scrapyd queued) to order jobs across projects and
-- `job` (the job id; NULL for rows Scrapyd queued) to find a job without parsing messages.
CREATE TABLE IF NOT EXISTS spider_queue (
    id integer PRIMARY KEY,
    priority real key,
    message blob,
    created integer NOT NULL DEFAULT 0,
    job text
);
CREATE INDEX IF NOT EXISTS spider_queue_job ON spider_queue (job);
CREATE INDEX IF NOT EXISTS spider_queue_order ON spider_queue (priority DESC, id);
