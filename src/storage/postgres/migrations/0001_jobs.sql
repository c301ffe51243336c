-- The Scrapyd side: the nodes of a cluster, the one shared queue, and a row per job from the
-- moment a node takes it off the queue (`running`) to its end (`finished`). The columns are
-- those of the SQLite files (`{project}.db` spider_queue, jobs.db jobs), so a SQLite node's
-- state copies over one to one; what a cluster adds is the node of each job.

CREATE TABLE nodes (
    name text PRIMARY KEY,
    url text NOT NULL,
    max_proc integer NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    -- A new number each time the name is registered: a node's writes carry the number it
    -- registered with, so a node whose registration was taken over writes nothing.
    registration bigint NOT NULL DEFAULT 1,
    -- False once another node found its heartbeat older than `node_timeout` and recorded its
    -- running jobs `lost`.
    alive boolean NOT NULL DEFAULT true
);

-- Scrapyd's queue message (`message`, the JSON a Scrapyd queue file holds: name, _job,
-- settings, _version, spider arguments) is kept as it is, so a pending job reads the same on
-- both backends; `created` (µs since the epoch) orders jobs across projects.
CREATE TABLE spider_queue (
    id bigserial PRIMARY KEY,
    project text NOT NULL,
    priority double precision NOT NULL,
    message text NOT NULL,
    created bigint NOT NULL,
    job text NOT NULL
);
-- The claim: highest priority, then oldest, over the projects a node serves.
CREATE INDEX spider_queue_order ON spider_queue (priority DESC, created, id);
CREATE INDEX spider_queue_job ON spider_queue (project, job);

CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    project text NOT NULL,
    spider text NOT NULL,
    job text NOT NULL,
    version text,
    settings text NOT NULL DEFAULT '{}',
    args text NOT NULL DEFAULT '{}',
    priority double precision NOT NULL DEFAULT 0,
    state text NOT NULL CHECK (state IN ('running', 'finished')),
    node text,
    pid integer,
    start_time bigint NOT NULL,
    end_time bigint,
    exit_code integer,
    signal integer,
    outcome text,
    reason text,
    finish_reason text,
    stats text,
    proc_start text,
    -- Cancels asked for through other nodes (how many, and the signal of the last one): the
    -- node running the job applies each once.
    cancels integer NOT NULL DEFAULT 0,
    cancel_signal text
);
CREATE INDEX jobs_running ON jobs (node) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, end_time, id);
CREATE INDEX jobs_by_job ON jobs (job);
