-- Frontier slots (with their batch counter), their fingerprints and their queued requests
-- (by priority, batch and position: the queue order).
CREATE TABLE cloud_frontier_slot (
    project text,
    frontier text,
    slot text,
    id bigint NOT NULL UNIQUE,
    next_batch bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (project, frontier, slot)
);
CREATE SEQUENCE cloud_frontier_slot_ids OWNED BY cloud_frontier_slot.id;
CREATE TABLE cloud_frontier_fingerprint (
    slot bigint,
    fp text COLLATE "C",
    fdata text,
    PRIMARY KEY (slot, fp)
);
CREATE TABLE cloud_frontier_request (
    slot bigint,
    priority bigint,
    batch bigint,
    n bigint,
    fp text NOT NULL,
    qdata text,
    PRIMARY KEY (slot, priority, batch, n)
);
