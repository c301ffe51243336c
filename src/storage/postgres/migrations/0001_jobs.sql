-- The nodes of a cluster and the whole life of a job, in one table: pending (the shared queue),
-- running (on one node) and finished. A Scrapyd queue file's message fields are columns here.

CREATE TABLE nodes (
    name text PRIMARY KEY,
    url text NOT NULL,
    max_proc integer NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    -- Changes each time the name is registered: a node's writes carry the generation it
    -- registered with, so a node whose registration was taken over writes nothing.
    generation bigint NOT NULL DEFAULT 1
);

CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    project text NOT NULL,
    spider text NOT NULL,
    job text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'running', 'finished')),
    priority double precision NOT NULL,
    -- Microseconds since the epoch, as on SQLite.
    created bigint NOT NULL,
    version text,
    settings jsonb NOT NULL DEFAULT '[]',
    args jsonb NOT NULL DEFAULT '[]',
    node text REFERENCES nodes (name),
    pid integer,
    proc_start text,
    start_time bigint,
    end_time bigint,
    exit_code integer,
    signal integer,
    outcome text,
    finish_reason text,
    stats jsonb
);

-- The claim: the highest priority, then the oldest, of the projects a node serves.
CREATE INDEX jobs_pending ON jobs (priority DESC, created, id) WHERE state = 'pending';
CREATE INDEX jobs_running ON jobs (node) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (end_time DESC, id DESC) WHERE state = 'finished';
CREATE INDEX jobs_by_id ON jobs (project, job);
